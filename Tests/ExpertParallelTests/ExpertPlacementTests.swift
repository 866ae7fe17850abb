// ExpertPlacementTests.swift: expert → rank maps (contiguous, from JSON, located errors) and
// the wave rule of ShardedExpertExecutor; no MPI needed (the mpirun runs are in
// Tests/python/test_expert_parallel.py).
import Foundation
import Testing

@testable import ExpertParallel

@Suite struct ExpertPlacementTests {
    @Test func contiguousGivesEachRankABlockOfNearlyEqualSize() {
        let p = ExpertPlacement.contiguous(expertCounts: [8, 0, 7], rankCount: 3)
        #expect(p.owner[0] == [0, 0, 0, 1, 1, 1, 2, 2])
        #expect(p.owner[1] == [])
        #expect(p.owner[2] == [0, 0, 0, 1, 1, 2, 2])
        #expect(p.experts(layer: 0, rank: 1) == [3, 4, 5])
    }

    private func write(_ text: String) -> String {
        let path = NSTemporaryDirectory() + "placement-\(UUID().uuidString).json"
        _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    @Test func loadsOneListForEveryLayerOrOneListPerLayer() throws {
        let shared = try ExpertPlacement.load(path: write(#"{"expert_rank": [1, 0, 1, 0]}"#), expertCounts: [4, 4], rankCount: 2)
        #expect(shared.owner == [[1, 0, 1, 0], [1, 0, 1, 0]])
        let perLayer = try ExpertPlacement.load(path: write(#"{"expert_rank": [[0, 0, 1], [1, 1, 0]]}"#), expertCounts: [3, 3], rankCount: 2)
        #expect(perLayer.owner == [[0, 0, 1], [1, 1, 0]])
        #expect(perLayer.digest != shared.digest)
    }

    @Test(arguments: [
        (#"{"expert_rank": [0, 1, 2]}"#, "expert 2: 2 is not a rank in 0..<2"),
        (#"{"expert_rank": [0, 1]}"#, "layer 0 lists 2 experts; the model has 3"),
        (#"{"expert_rank": [0, 1.5, 0]}"#, "expert 1: 1.5 is not a rank"),
        (#"{"experts": [0, 1, 0]}"#, "expected a JSON object with an \"expert_rank\" array"),
        (#"{"expert_rank": [[0, 1, 0]]}"#, "1 layers listed; the model has 2"),
        ("not json", "expected a JSON object"),
    ])
    func badFilesAreLocatedErrors(text: String, message: String) {
        let path = write(text)
        do {
            _ = try ExpertPlacement.load(path: path, expertCounts: [3, 3], rankCount: 2)
            Issue.record("accepted \(text)")
        } catch {
            #expect("\(error)".hasPrefix(path))
            #expect("\(error)".contains(message), "\(error)")
        }
    }

    @Test func missingFileIsALocatedError() {
        #expect(throws: ExpertParallelError.placement(path: "/nonexistent/p.json", reason: "cannot read the file")) {
            try ExpertPlacement.load(path: "/nonexistent/p.json", expertCounts: [3], rankCount: 2)
        }
    }

    @Test func waveRuleUsesTheBusiestRanksExpertsUpToTheMaximum() {
        #expect(ShardedExpertExecutor.waveCount(usedExperts: [2, 5], maxWaves: 4) == 4)
        #expect(ShardedExpertExecutor.waveCount(usedExperts: [2, 3], maxWaves: 4) == 3)
        #expect(ShardedExpertExecutor.waveCount(usedExperts: [0, 0], maxWaves: 4) == 1)
    }

    @Test func wavesAreContiguousWithAboutEqualRows() {
        #expect(ShardedExpertExecutor.waveOf(rows: [1, 1, 1, 1], waveCount: 2) == [0, 0, 1, 1])
        #expect(ShardedExpertExecutor.waveOf(rows: [6, 1, 1, 1, 1], waveCount: 2) == [0, 1, 1, 1, 1])
        #expect(ShardedExpertExecutor.waveOf(rows: [3], waveCount: 3) == [0])
        let w = ShardedExpertExecutor.waveOf(rows: Array(repeating: 2, count: 9), waveCount: 3)
        #expect(w == [0, 0, 0, 1, 1, 1, 2, 2, 2])
    }

    @Test func fnvDigestIsStableAcrossProcesses() {
        var h = FNV1a()
        h.add("a")
        // FNV-1a of the length (8 bytes, little-endian 1) then "a": a fixed value, not seeded.
        var g = FNV1a()
        g.add(UInt64(1))
        g.add("a".utf8)
        #expect(h.value == g.value)
        #expect(FNV1a().value == 0xcbf2_9ce4_8422_2325)
    }

    @Test func criticalPathCommunicationIsTheLastResultAfterTheLastReadyRank() {
        // Rank 1 is ready last (at 100); rank 0 gets the last result at 130: 30 ns on the path.
        #expect(ShardedExpertExecutor.criticalNanoseconds(ready: [40, 100], done: [130, 101]) == 30)
        // A rank that waits for a slower one adds nothing: everything arrived before 100.
        #expect(ShardedExpertExecutor.criticalNanoseconds(ready: [40, 100], done: [99, 100]) == 0)
        #expect(ShardedExpertExecutor.criticalNanoseconds(ready: [], done: []) == 0)
    }
}
