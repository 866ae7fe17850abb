// KVCacheFormatTests.swift: the stored formats of compressed entries (kernels/kvcache.c):
// f32 keeps the bits, bf16 and fp8 stay within their stated bounds, E4M3 rounds to nearest.
import CKernels
import Foundation
import Testing

@Suite struct KVCacheFormatTests {
    func roundTrip(_ f: ck_kv_format, _ v: [Float], rope: Int) -> [Float] {
        let d = v.count
        let bytes = ck_kv_entry_bytes(f, d, rope)
        #expect(bytes % 4 == 0)
        var stored = [UInt8](repeating: 0xAA, count: bytes)
        var out = [Float](repeating: .nan, count: d)
        ck_kv_store(f, v, d, rope, &stored)
        ck_kv_load(f, stored, d, rope, &out)
        return out
    }

    @Test(arguments: [(128, 32), (32, 8), (20, 6), (4, 0)])
    func formatsStayWithinTheirBounds(d: Int, rope: Int) {
        for seed in UInt64(1)...20 {
            // Entries are RMS-normed then weighted: O(1) values with a few larger ones.
            var v = randomFloats(d, seed: seed).map { $0 * 2 }
            v[Int(seed) % d] *= 40
            #expect(roundTrip(CK_KV_F32, v, rope: rope) == v)
            let b = roundTrip(CK_KV_BF16, v, rope: rope)
            for i in 0..<d { #expect(abs(b[i] - v[i]) <= 0x1p-8 * abs(v[i]), "bf16 dim \(i)") }
            let f = roundTrip(CK_KV_FP8, v, rope: rope)
            let amax = v[0..<(d - rope)].map(abs).max() ?? 0
            let scale = amax / 448
            for i in 0..<(d - rope) { #expect(abs(f[i] - v[i]) <= 0x1p-4 * abs(v[i]) + 0x1p-10 * scale * 1.0001, "fp8 dim \(i)") }
            for i in (d - rope)..<d { #expect(abs(f[i] - v[i]) <= 0x1p-8 * abs(v[i]), "fp8 rope dim \(i)") }
        }
        #expect(ck_kv_entry_bytes(CK_KV_FP8, 128, 32) == 4 + 96 + 64)
        #expect(ck_kv_entry_bytes(CK_KV_BF16, 128, 32) == 256)
    }

    /// The vector loads (F16C for E4M3, a shift for BF16) give the scalar loop's bits.
    @Test func vectorLoadsMatchTheScalarLoop() {
        for (d, rope) in [(128, 32), (37, 5), (8, 0), (3, 2)] {
            var v = randomFloats(d, seed: UInt64(d)).map { $0 * 3 }
            v[0] = 5e-5  // an E4M3 subnormal after scaling (amax ≈ 3)
            for f in [CK_KV_BF16, CK_KV_FP8] {
                var stored = [UInt8](repeating: 0, count: ck_kv_entry_bytes(f, d, rope))
                ck_kv_store(f, v, d, rope, &stored)
                var fast = [Float](repeating: .nan, count: d), scalar = fast
                ck_kv_load(f, stored, d, rope, &fast)
                ck_force_impl(CK_IMPL_SCALAR)
                ck_kv_load(f, stored, d, rope, &scalar)
                ck_force_impl(CK_IMPL_AUTO)  // the thread runs later tests
                #expect(fast.map(\.bitPattern) == scalar.map(\.bitPattern), "format \(f.rawValue), d \(d)")
            }
        }
    }

    /// A zero entry stores a zero scale and reads back as zeros (no 0/0).
    @Test func zeroEntry() {
        #expect(roundTrip(CK_KV_FP8, [Float](repeating: 0, count: 16), rope: 4) == [Float](repeating: 0, count: 16))
    }

    /// Every finite E4M3 value encodes to itself, and random values to the nearest code.
    @Test func e4m3RoundsToNearest() {
        let codes = (0..<256).filter { $0 & 0x7F != 0x7F }
        let values = codes.map { ck_e4m3_to_f32(UInt8($0)) }
        for (c, v) in zip(codes, values) where v != 0 { #expect(ck_f32_to_e4m3(v) == UInt8(c)) }
        var rng: UInt64 = 7
        for _ in 0..<20_000 {
            rng = rng &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            let x = (Float(rng >> 40) / Float(1 << 24) - 0.5) * 900 * Float(pow(2.0, -Double((rng >> 8) % 14)))
            let got = ck_e4m3_to_f32(ck_f32_to_e4m3(x))
            let best = values.map { abs($0 - x) }.min()!
            #expect(abs(got - x) <= best, "\(x) → \(got)")
        }
        #expect(ck_e4m3_to_f32(ck_f32_to_e4m3(1000)) == 448 && ck_e4m3_to_f32(ck_f32_to_e4m3(-460)) == -448)
    }
}
