// DenseTwinTests.swift: the FP8/FP4 fixture and its dense F32 twin give the same logits.
// The twin is built here, each stored code decoded with torch's tables
// (Tests/Fixtures/fp-golden.json) and multiplied by its E8M0 block scale, which is what
// `tools/make_released_fixture.py --fp32-out` writes.
//
// NOTE: not bit for bit. The scaled kernels sum each scale block and then apply its
// power-of-two scale, the dense kernels sum all products in one run: the same exact products,
// associated differently, so the float32 sums round differently (2.2e-6 on a 704-token
// released-layout model, bench/RESULTS.md). The bound below is far under the 1e-4 budget
// against transformers and far over that rounding.
import Checkpoint
import DeepSeekV4
import Foundation
import Testing

@Suite struct DenseTwinTests {
    /// Code-point tables decoded by torch (its NaNs, stored as null, as Float.nan).
    struct Tables {
        let e4m3: [Float]
        let e8m0: [Float]
        let e2m1: [Float]

        init() throws {
            let data = try Data(contentsOf: URL(fileURLWithPath: fixture("fp-golden.json")))
            let obj = try JSONSerialization.jsonObject(with: data) as! [String: Any]
            func column(_ key: String) -> [Float] { (obj[key] as! [Any]).map { ($0 as? NSNumber)?.floatValue ?? .nan } }
            e4m3 = column("e4m3")
            e8m0 = column("e8m0")
            e2m1 = column("e2m1")
            #expect(e4m3.count == 256 && e8m0.count == 256 && e2m1.count == 16)
        }
    }

    /// Writes the dense F32 twin of the released-layout checkpoint `source` into `dest`.
    func writeDenseTwin(of source: String, to dest: String, tables t: Tables) throws {
        let store = try TensorStore(directory: source)
        var out: [String: TensorBlob] = [:]
        for name in store.names where !name.hasSuffix(".scale") {
            let v = store.view(name)!
            let bytes = try v.file.read(v.info)
            switch v.dtype {
            case .f8e4m3, .i8:
                let scale = try store.tensor(String(name.dropLast(".weight".count)) + ".scale")
                #expect(scale.dtype == .f8e8m0)
                let s = try scale.file.read(scale.info)
                let rows = v.shape[0]
                let fp8 = v.dtype == .f8e4m3
                let cols = fp8 ? v.shape[1] : 2 * v.shape[1]
                var values = [Float](repeating: 0, count: rows * cols)
                for r in 0..<rows {
                    for c in 0..<cols {
                        if fp8 {
                            values[r * cols + c] = t.e4m3[Int(bytes[r * cols + c])] * t.e8m0[Int(s[(r / 128) * scale.shape[1] + c / 128])]
                        } else {
                            let byte = bytes[r * (cols / 2) + c / 2]
                            let code = t.e2m1[Int(c % 2 == 0 ? byte & 0x0F : byte >> 4)]  // low nibble first
                            values[r * cols + c] = code * t.e8m0[Int(s[r * scale.shape[1] + c / 32])]
                        }
                    }
                }
                #expect(!values.contains { $0.isNaN }, "\(name) decodes to NaN")
                out[name] = TensorBlob(shape: [rows, cols], floats: values)
            case .bf16, .f16, .f32:
                out[name] = TensorBlob(shape: v.shape, floats: try v.floats())
            default:
                out[name] = TensorBlob(dtype: v.dtype, shape: v.shape, bytes: Data(bytes))
            }
        }
        try FileManager.default.createDirectory(atPath: dest, withIntermediateDirectories: true)
        try SafetensorsWriter.write(out, to: dest + "/model.safetensors")
        var config = try configJSON(source)
        config.removeValue(forKey: "quantization_config")
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: dest + "/config.json"))
    }

    @Test func quantizedAndDenseTwinGiveTheSameLogits() throws {
        let source = fixture("tiny-fp8")
        let twin = NSTemporaryDirectory() + "dsv4-twin-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: twin) }
        try writeDenseTwin(of: source, to: twin, tables: try Tables())

        let quantized = try DeepSeekV4Model(directory: source)
        let dense = try DeepSeekV4Model(directory: twin)
        #expect(dense.store.bytesByDType[.f8e4m3] == nil && dense.store.bytesByDType[.i8] == nil)
        #expect(quantized.unusedTensors.filter { !$0.hasSuffix(".scale") } == dense.unusedTensors)  // the MTP block in both
        let ids = Array(try readIds(source).prefix(80))
        let a = try run(quantized, ids, chunk: nil)
        let b = try run(dense, ids, chunk: nil)
        let worst = zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
        print("tiny-fp8 vs its dense F32 twin, 80 tokens: max |Δlogit| = \(worst)")
        #expect(worst <= 2e-5, "max |Δlogit| between FP8/FP4 and the dense twin: \(worst)")
        // And both agree with transformers on the dequantized weights.
        let ref = try readReference(source)
        let refWorst = (0..<a.count).map { abs(a[$0] - ref.logits[$0]) }.max() ?? .infinity
        #expect(refWorst <= 1e-4)
    }
}
