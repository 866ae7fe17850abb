// ModelWeights.swift: every tensor of the model, found by name, shape-checked, and kept
// in its stored format (matrices stay memory-mapped; small vectors are decoded to fp32).
import Checkpoint
import ModelRuntime
import Tensors

/// Hyper-connection parameters of one block (DeepseekV4HyperConnection): fn `[mix, N·D]`, base `[mix]`, scale `[3]`.
struct HyperConnectionWeights: Sendable {
    let fn: WeightMatrix
    let base: [Float]
    let scale: [Float]
}

/// A token-level compressor (DeepseekV4HCACompressor / DeepseekV4CSACompressor): projections `[width, D]`, `ape` `[ratio, width]`,
/// `norm` `[entryWidth]`, where width = entryWidth (HCA) or 2·entryWidth (CSA, overlapping).
struct CompressorWeights: Sendable {
    let wkv: WeightMatrix
    let wgate: WeightMatrix
    let ape: [Float]
    let norm: [Float]
    let ratio: Int
    let entryWidth: Int
    let overlapping: Bool
}

/// Lightning Indexer (DeepseekV4Indexer): `wqB` `[nh·ihd, qLora]`, `weightsProj` `[nh, D]`, and its compressor.
struct IndexerWeights: Sendable {
    let wqB: WeightMatrix
    let weightsProj: WeightMatrix
    let compressor: CompressorWeights
}

/// Attention block (DeepseekV4Attention).
struct AttentionWeights: Sendable {
    let wqA: WeightMatrix  // [qLora, D]
    let qNorm: [Float]  // [qLora]
    let wqB: WeightMatrix  // [H·d, qLora]
    let wkv: WeightMatrix  // [d, D]
    let kvNorm: [Float]  // [d]
    let woA: WeightMatrix  // [G·oLora, H·d/G]
    let woB: WeightMatrix  // [D, G·oLora]
    let sinks: [Float]  // [H]
    let compressor: CompressorWeights?
    let indexer: IndexerWeights?
}

/// Router and shared expert of one MoE layer (DeepseekV4SparseMoeBlock); routed experts live in the executor.
struct MoEWeights: Sendable {
    let gate: WeightMatrix  // [E, D]
    let bias: [Float]?  // [E], score layers
    let tid2eid: [Int32]?  // [vocab, k], hash layers
    let shared: ExpertWeights?
}

struct LayerWeights: Sendable {
    let attentionHC: HyperConnectionWeights
    let ffnHC: HyperConnectionWeights
    let attentionNorm: [Float]
    let ffnNorm: [Float]
    let attention: AttentionWeights
    let moe: MoEWeights
}

/// All weights of the main model, plus the routed experts for an executor.
struct ModelWeights: Sendable {
    let embed: WeightMatrix  // [vocab, D]
    let head: WeightMatrix  // [vocab, D]
    let norm: [Float]  // [D]
    let hcHeadFn: WeightMatrix  // [N, N·D]
    let hcHeadBase: [Float]  // [N]
    let hcHeadScale: [Float]  // [1]
    let layers: [LayerWeights]
    /// `[layer][expert]`.
    let experts: [[ExpertWeights]]
    /// Tensors present in the checkpoint but not read (MTP, extras).
    let unusedTensors: [String]
}

/// Finds tensors by candidate names and remembers which were used.
final class WeightLoader {
    let store: TensorStore
    private(set) var used: Set<String> = []

    init(store: TensorStore) { self.store = store }

    /// The first candidate present, trying each also with transformers' `model.` prefix
    /// (`save_pretrained` in transformers 5.24 writes the released names under `model.`).
    func resolve(_ candidates: [String]) -> String? {
        for name in candidates {
            if store.contains(name) { return name }
            if store.contains("model." + name) { return "model." + name }
        }
        return nil
    }

    func find(_ candidates: [String], shape: [Int]) throws -> TensorView {
        if let name = resolve(candidates), let v = store.view(name) {
            do {
                guard v.shape == shape else { throw CheckpointError.shapeMismatch(tensor: name, path: v.file.path, expected: shape, actual: v.shape) }
                used.insert(name)
                return v
            }
        }
        throw store.missing(candidates.count > 1 ? "\(candidates[0])' (or '\(candidates[1])" : candidates[0])
    }

    /// A projection of logical shape `[rows, cols]` in any stored format (dense, FP8 with block
    /// scales, packed FP4), with its scale companion marked as used.
    func matrix(_ candidates: [String], _ shape: [Int]) throws -> WeightMatrix {
        precondition(shape.count == 2)
        guard let name = resolve(candidates), let v = store.view(name) else {
            throw store.missing(candidates.count > 1 ? "\(candidates[0])' (or '\(candidates[1])" : candidates[0])
        }
        let (m, scaleName) = try store.matrix(v, rows: shape[0], cols: shape[1])
        used.insert(name)
        if let scaleName { used.insert(scaleName) }
        return m
    }

    func floats(_ candidates: [String], _ shape: [Int]) throws -> [Float] {
        try find(candidates, shape: shape).floats()
    }
}

extension ModelWeights {
    /// Loads and checks every tensor of `config` from `store`.
    /// - Throws: `CheckpointError` naming the first missing or mis-shaped tensor.
    static func load(config c: DeepSeekV4Config, store: TensorStore) throws -> ModelWeights {
        let w = WeightLoader(store: store)
        let D = c.hiddenSize
        let N = c.hcMult
        var layers: [LayerWeights] = []
        var experts: [[ExpertWeights]] = []
        for l in 0..<c.layerCount {
            let attn = try w.attention(c, layer: l)
            let moe = try w.moe(c, layer: l)
            experts.append(try w.routedExperts(c, layer: l))
            layers.append(LayerWeights(
                attentionHC: try w.hyperConnection(c, layer: l, "attn"), ffnHC: try w.hyperConnection(c, layer: l, "ffn"),
                attentionNorm: try w.floats(WeightNames.attnNorm(l), [D]),
                ffnNorm: try w.floats(WeightNames.ffnNorm(l), [D]),
                attention: attn, moe: moe))
        }

        let model = ModelWeights(
            embed: try w.matrix(WeightNames.embed, [c.vocabSize, D]),
            head: try w.matrix(WeightNames.head, [c.vocabSize, D]),
            norm: try w.floats(WeightNames.norm, [D]),
            hcHeadFn: try w.matrix(WeightNames.hcHeadFn, [N, N * D]),
            hcHeadBase: try w.floats(WeightNames.hcHeadBase, [N]),
            hcHeadScale: try w.floats(WeightNames.hcHeadScale, [1]),
            layers: layers, experts: experts,
            unusedTensors: store.names.filter { !w.used.contains($0) })
        return model
    }
}

// MARK: - One layer's parts

extension WeightLoader {
    /// Hyper-connection tensors of `block` ("attn" or "ffn") of layer `l`.
    func hyperConnection(_ c: DeepSeekV4Config, layer l: Int, _ block: String) throws -> HyperConnectionWeights {
        let D = c.hiddenSize, N = c.hcMult
        return HyperConnectionWeights(
            fn: try matrix(WeightNames.hc(l, block, "fn"), [c.hcMixCount, N * D]),
            base: try floats(WeightNames.hc(l, block, "base"), [c.hcMixCount]),
            scale: try floats(WeightNames.hc(l, block, "scale"), [3]))
    }

    /// A compressor of layer `l` (the indexer's own with `indexer`).
    func compressor(_ c: DeepSeekV4Config, layer l: Int, indexer: Bool, entryWidth: Int, ratio: Int, overlapping: Bool) throws -> CompressorWeights {
        let D = c.hiddenSize
        let width = overlapping ? 2 * entryWidth : entryWidth
        return CompressorWeights(
            wkv: try matrix(WeightNames.compressor(l, indexer: indexer, "wkv.weight"), [width, D]),
            wgate: try matrix(WeightNames.compressor(l, indexer: indexer, "wgate.weight"), [width, D]),
            ape: try floats(WeightNames.compressor(l, indexer: indexer, "ape"), [ratio, width]),
            norm: try floats(WeightNames.compressor(l, indexer: indexer, "norm.weight"), [entryWidth]),
            ratio: ratio, entryWidth: entryWidth, overlapping: overlapping)
    }

    /// Layer `l`'s attention block, with its compressor and indexer for its kind.
    func attention(_ c: DeepSeekV4Config, layer l: Int) throws -> AttentionWeights {
        let D = c.hiddenSize, d = c.headDim, H = c.headCount
        var comp: CompressorWeights?
        var idx: IndexerWeights?
        switch c.attentionKinds[l] {
        case .sliding:
            break
        case .hca:
            comp = try compressor(c, layer: l, indexer: false, entryWidth: d, ratio: c.hcaRatio, overlapping: false)
        case .csa:
            comp = try compressor(c, layer: l, indexer: false, entryWidth: d, ratio: c.csaRatio, overlapping: true)
            idx = IndexerWeights(
                wqB: try matrix(WeightNames.indexerQB(l), [c.indexHeadCount * c.indexHeadDim, c.qLoraRank]),
                weightsProj: try matrix(WeightNames.indexerWeightsProj(l), [c.indexHeadCount, D]),
                compressor: try compressor(c, layer: l, indexer: true, entryWidth: c.indexHeadDim, ratio: c.csaRatio, overlapping: true))
        }
        return AttentionWeights(
            wqA: try matrix(WeightNames.attn(l, "wq_a.weight"), [c.qLoraRank, D]),
            qNorm: try floats(WeightNames.attn(l, "q_norm.weight"), [c.qLoraRank]),
            wqB: try matrix(WeightNames.attn(l, "wq_b.weight"), [H * d, c.qLoraRank]),
            wkv: try matrix(WeightNames.attn(l, "wkv.weight"), [d, D]),
            kvNorm: try floats(WeightNames.attn(l, "kv_norm.weight"), [d]),
            woA: try matrix(WeightNames.attn(l, "wo_a.weight"), [c.outputGroups * c.outputLoraRank, H * d / c.outputGroups]),
            woB: try matrix(WeightNames.attn(l, "wo_b.weight"), [D, c.outputGroups * c.outputLoraRank]),
            sinks: try floats(WeightNames.attn(l, "attn_sink"), [H]),
            compressor: comp, indexer: idx)
    }

    /// Layer `l`'s router (score bias or hash table) and shared expert.
    func moe(_ c: DeepSeekV4Config, layer l: Int) throws -> MoEWeights {
        let D = c.hiddenSize, E = c.routedExpertCount, inter = c.moeIntermediateSize
        var bias: [Float]?
        var tid2eid: [Int32]?
        switch c.routingKinds[l] {
        case .score:
            bias = try floats(WeightNames.gateBias(l), [E])
        case .hash:
            let t = try find(WeightNames.tid2eid(l), shape: [c.vocabSize, c.expertsPerToken])
            let ids = try t.integers()
            if let bad = ids.first(where: { $0 < 0 || $0 >= E }) {
                throw CheckpointError.invalidValue(tensor: t.name, path: t.file.path, reason: "expert id \(bad) outside 0..<\(E)")
            }
            tid2eid = ids.map { Int32($0) }
        }
        var shared: ExpertWeights?
        if c.sharedExpertCount > 0 {
            shared = ExpertWeights(
                w1: try matrix(WeightNames.shared(l, "w1"), [inter, D]),
                w3: try matrix(WeightNames.shared(l, "w3"), [inter, D]),
                w2: try matrix(WeightNames.shared(l, "w2"), [D, inter]))
        }
        return MoEWeights(gate: try matrix(WeightNames.gate(l), [E, D]), bias: bias, tid2eid: tid2eid, shared: shared)
    }

    /// Layer `l`'s routed experts: released per-expert matrices, or transformers' fused 3-D
    /// tensors (`gate_up_proj` [E, 2I, D]: w1 is its first I rows, w3 the next I; `down_proj`
    /// [E, D, I]), viewed in place.
    func routedExperts(_ c: DeepSeekV4Config, layer l: Int) throws -> [ExpertWeights] {
        let D = c.hiddenSize, E = c.routedExpertCount, inter = c.moeIntermediateSize
        var layerExperts: [ExpertWeights] = []
        if resolve([WeightNames.expert(l, 0, "w1")]) != nil {
            for e in 0..<E {
                layerExperts.append(ExpertWeights(
                    w1: try matrix([WeightNames.expert(l, e, "w1")], [inter, D]),
                    w3: try matrix([WeightNames.expert(l, e, "w3")], [inter, D]),
                    w2: try matrix([WeightNames.expert(l, e, "w2")], [D, inter])))
            }
            return layerExperts
        }
        let gateUp = try find([WeightNames.fusedGateUp(l), WeightNames.expert(l, 0, "w1")], shape: [E, 2 * inter, D])
        let down = try find([WeightNames.fusedDown(l)], shape: [E, D, inter])
        let gu = try gateUp.matrix()  // [E, 2I·D] viewed as rows of experts
        let dn = try down.matrix()
        for e in 0..<E {
            let guE = WeightMatrix(rows: 2 * inter, cols: D, type: gu.type, base: gu.base + e * gu.type.byteCount(elements: 2 * inter * D), owner: gu.owner)
            let dnE = WeightMatrix(rows: D, cols: inter, type: dn.type, base: dn.base + e * dn.type.byteCount(elements: D * inter), owner: dn.owner)
            layerExperts.append(ExpertWeights(w1: guE.rows(0..<inter), w3: guE.rows(inter..<(2 * inter)), w2: dnE))
        }
        return layerExperts
    }
}
