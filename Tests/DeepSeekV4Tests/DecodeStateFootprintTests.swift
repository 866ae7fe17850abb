// DecodeStateFootprintTests.swift: the decode-state bytes `dsv4 inspect` reports, against figures
// worked out by hand for DeepSeek-V4-Flash's schedule (41 compressed layers, 43 windows) and against what SequenceState really allocates.
import DeepSeekV4
import Foundation
import Testing

@Suite struct DecodeStateFootprintTests {
    /// Flash's attention schedule and widths on top of the tiny released config.
    @Test func flashBytesPerTokenMatchTheSpec() throws {
        var obj = try configJSON(fixture("tiny-released"))
        obj["num_hidden_layers"] = 43
        obj["compress_ratios"] = [0, 0] + Array(repeating: [4, 128], count: 20).flatMap { $0 } + [4, 0]
        obj["head_dim"] = 512
        obj["index_head_dim"] = 128
        obj["sliding_window"] = 128
        let c = try DeepSeekV4Config.decode(json: try JSONSerialization.data(withJSONObject: obj))
        #expect(c.attentionKinds.filter { $0 == .csa }.count == 21 && c.attentionKinds.filter { $0 == .hca }.count == 20)
        #expect(c.decodeStateFootprint(elementBytes: 2).bytesPerToken == 6880)  // Flash, bf16: 21 × (512 + 128) × 2 / 4 + 20 × 512 × 2 / 128
        #expect(c.decodeStateFootprint(elementBytes: 4).bytesPerToken == 13760)  // Flash, fp32: twice that
        // Constant part: windows 43 × 128 × 512 × 2 B = 5.5 MB, plus fp32 compressor states (64 + 16 KiB per CSA, 512 KiB per HCA).
        #expect(c.decodeStateFootprint(elementBytes: 2).constantBytes == 43 * 128 * 512 * 2 + 21 * (64 + 16) * 1024 + 20 * 512 * 1024)
    }

    /// The constant part equals a fresh SequenceState's allocation.
    @Test func constantPartIsWhatTheEngineAllocates() throws {
        let model = try DeepSeekV4Model(directory: fixture("tiny-fp8"))
        let f = model.config.decodeStateFootprint(elementBytes: 4)
        let state = model.makeState()
        #expect(state.byteCount == f.constantBytes)
        let ids = Array(try readIds(fixture("tiny-fp8")).prefix(256))
        _ = try model.forward(tokens: ids, state: state)
        #expect(Double(state.byteCount) == f.bytes(tokens: 256))
    }
}
