// CacheMetricsTests.swift: /metrics reports the cache per block kind and per cache kind.
import Engine
import ModelRuntime
@testable import Server
import Testing

/// ScriptedModel with its one page value counted as a CSA entry and its one state value as
/// a window ring, so the metrics have named kinds.
final class KindedScriptedModel: CausalLM, @unchecked Sendable {
    let base = ScriptedModel(script: [5, 6, 7], vocabSize: 20, eos: 1)
    let cacheLayout = CacheLayout(pageTokens: 16, pageFloats: 1, stateFloats: 1, pageKinds: [.csaEntries: 1], stateKinds: [.windowRings: 1])
    var vocabSize: Int { base.vocabSize }
    var maxPositions: Int { base.maxPositions }
    var eosTokenIds: [Int] { base.eosTokenIds }
    func initializeState(_ state: UnsafeMutablePointer<Float>) { base.initializeState(state) }
    func forward(_ steps: [SequenceStep]) throws -> [[Float]] { try base.forward(steps) }
}

@Suite struct CacheMetricsTests {
    @Test func metricsBreakTheCacheDownByKind() throws {
        let core = EngineCore(model: KindedScriptedModel(), configuration: EngineConfiguration(cacheBytes: 4096))
        var p = SamplingParameters()
        p.temperature = 0
        p.maxTokens = 2
        let prompt = Array(repeating: 3, count: 40)
        for _ in 0..<2 {
            _ = try core.add(prompt: prompt, parameters: p)
            while core.hasWork { _ = core.step() }
        }
        let text = ServerMetrics().render(engine: EngineMetrics(core: core))
        // Two full 16-token pages stay cached (4 B each) with their snapshots (4 B each), and two
        // tails (a partial page and a snapshot each): the prompt's end (40) and the output's (41).
        for needle in [
            #"dsv4_cache_blocks{block="page"} 4"#, #"dsv4_cache_blocks{block="snapshot"} 4"#, #"dsv4_cache_blocks{block="state"} 0"#,
            #"dsv4_prefix_cache_pages 2"#, #"dsv4_prefix_cache_tails 2"#,
            #"dsv4_cache_kind_used_bytes{kind="csaEntries"} 16"#, #"dsv4_cache_kind_used_bytes{kind="windowRings"} 16"#,
            #"dsv4_cache_kind_capacity_bytes{kind="csaEntries"} 4096"#,
            // The second prompt could reuse 2 pages and hit both; the first hit nothing.
            #"dsv4_prefix_cache_kind_queried_bytes_total{kind="csaEntries"} 16"#,
            #"dsv4_prefix_cache_kind_hit_bytes_total{kind="csaEntries"} 8"#,
            #"dsv4_prefix_cache_kind_hit_bytes_total{kind="windowRings"} 4"#,
        ] {
            #expect(text.contains(needle + "\n"), "missing \(needle) in\n\(text)")
        }
    }
}
