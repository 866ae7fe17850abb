// InfoCommand.swift: `dsv4 inspect`, what a model folder holds.
import ArgumentParser
import Checkpoint
import DeepSeekV4
import Foundation
import Tensors

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Summarise a model folder: config, layer schedule, parameters, dtypes, cache sizes.")

    @Option(help: "Model folder.")
    var model: String

    func run() throws {
        let m: DeepSeekV4Model
        do { m = try DeepSeekV4Model(directory: model) } catch { fail("\(error)") }
        let c = m.config
        let short: [AttentionKind: String] = [.sliding: "S", .csa: "C", .hca: "H"]
        print("model: \(model)")
        print("hidden \(c.hiddenSize), layers \(c.layerCount), heads \(c.headCount)×\(c.headDim) (rope \(c.ropeDim)), vocab \(c.vocabSize)")
        print("experts: \(c.routedExpertCount) routed (top \(c.expertsPerToken)) + \(c.sharedExpertCount) shared, width \(c.moeIntermediateSize)")
        print("window \(c.slidingWindow), CSA ratio \(c.csaRatio) (indexer \(c.indexHeadCount)×\(c.indexHeadDim), top \(c.indexTopK)), HCA ratio \(c.hcaRatio)")
        print("attention schedule: " + c.attentionKinds.map { short[$0]! }.joined())
        print("routing schedule:   " + c.routingKinds.map { $0 == .hash ? "h" : "s" }.joined())
        let (total, active) = c.parameterCounts
        print("parameters: \(total) total, \(active) active per token")
        for (dt, bytes) in m.store.bytesByDType.sorted(by: { $0.value > $1.value }) {
            print("  \(dt.rawValue): \(bytes) bytes")
        }
        print("kernels: \(KernelSelection.implementationName) (cpu: \(KernelSelection.cpuFeatures.joined(separator: " ")))")
        if !m.unusedTensors.isEmpty {
            print("unused tensors: \(m.unusedTensors.count) (e.g. \(m.unusedTensors.prefix(3).joined(separator: ", ")))")
        }
    }
}
