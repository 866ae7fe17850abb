// MoE.swift: routing of the V4 mixture of experts (transformers' modeling_deepseek_v4.py, DeepseekV4TopKRouter / DeepseekV4HashRouter) and the shared expert.
//
// Score layers: s = sqrt(softplus(gate·h)), experts = top-k of s + bias (bias only selects);
// hash layers: experts = tid2eid[token]. Weights w_k = s_k / (Σ s + 1e-20) · routed_scaling.
// Routed experts run in the injected ExpertExecutor. Port of transformers'
// DeepseekV4TopKRouter / DeepseekV4HashRouter / DeepseekV4SparseMoeBlock.
import CKernels
import ModelRuntime
import Tensors

enum MoE {
    /// Routing decisions for `T` tokens; h is `[T, D]`.
    static func route(_ w: MoEWeights, h: [Float], tokens: [Int32], tokenCount T: Int, config c: DeepSeekV4Config) -> ExpertRouting {
        let E = c.routedExpertCount
        let K = c.expertsPerToken
        let logits = w.gate.apply(h, tokenCount: T)
        var experts = [Int32](repeating: 0, count: T * K)
        var weights = [Float](repeating: 0, count: T * K)
        let zeroBias = w.tid2eid == nil && w.bias == nil ? [Float](repeating: 0, count: E) : []
        // Tokens in chunks over the kernel threads (each token's arithmetic is independent).
        let chunks = T < 64 ? 1 : min(T / 32, 64)
        logits.withUnsafeBufferPointer { lp in
            experts.withUnsafeMutableBufferPointer { ep in
                weights.withUnsafeMutableBufferPointer { wp in
                    let lb = lp.baseAddress!, eb = ep.baseAddress!, wb = wp.baseAddress!
                    KernelThreads.parallelFor(chunks) { chunk in
                        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * E) { buf in
                            let scores = buf.baseAddress!, biased = scores + E
                            for t in stride(from: chunk, to: T, by: chunks) {
                                for e in 0..<E { scores[e] = VectorOps.softplus(lb[t * E + e]).squareRoot() }
                                if let table = w.tid2eid {
                                    let row = Int(tokens[t]) * K
                                    for k in 0..<K { eb[t * K + k] = table[row + k] }
                                } else {
                                    let bias = w.bias ?? zeroBias
                                    for e in 0..<E { biased[e] = scores[e] + bias[e] }
                                    ck_topk(biased, E, K, eb + t * K)
                                }
                                var sum: Float = 0
                                for k in 0..<K { sum += scores[Int(eb[t * K + k])] }
                                for k in 0..<K {
                                    wb[t * K + k] = scores[Int(eb[t * K + k])] / (sum + 1e-20) * c.routedScalingFactor
                                }
                            }
                        }
                    }
                }
            }
        }
        return ExpertRouting(tokenCount: T, topK: K, experts: experts, weights: weights)
    }

    /// routed(h) + shared(h), `[T, D]`.
    static func forward(
        _ w: MoEWeights, layer: Int, h: [Float], tokens: [Int32], tokenCount T: Int, executor: any ExpertExecutor,
        activation: SwiGLU, config c: DeepSeekV4Config
   ) -> [Float] {
        let D = c.hiddenSize
        let routing = route(w, h: h, tokens: tokens, tokenCount: T, config: c)
        var out = [Float](repeating: 0, count: T * D)
        // The shared expert runs while an expert-parallel executor's exchange is in flight.
        var s = [Float](repeating: 0, count: w.shared == nil ? 0 : T * D)
        h.withUnsafeBufferPointer { hp in
            out.withUnsafeMutableBufferPointer { op in
                executor.run(layer: layer, input: hp.baseAddress!, hiddenSize: D, routing: routing, output: op.baseAddress!) {
                    guard let shared = w.shared else { return }
                    s.withUnsafeMutableBufferPointer { activation.forward(shared, x: hp.baseAddress!, tokenCount: T, y: $0.baseAddress!) }
                }
            }
        }
        if !s.isEmpty { axpy(1, s, &out, T * D) }  // fma(1, s, out): the same sum as out + s
        return out
    }
}
