// Quantizer.swift: fp32 → the released checkpoints' formats (OCP FP8 E4M3FN, OCP MX E8M0/E2M1), DeepSeek's ue8m0
// recipe: a block's scale is 2^ceil(log2(amax / qmax)) (qmax 448 for E4M3, 6 for E2M1) and
// values round to the nearest representable code, ties to the even code. Used to generate
// quantized models; the kernels never need it.
import Foundation

/// Encoders to FP8 E4M3FN, FP4 E2M1 and E8M0, and block quantizers of whole matrices.
public enum Quantizer {
    /// Positive finite E4M3 values in code order (codes 0x00…0x7E are increasing).
    private static let e4m3Positive: [Float] = (0..<0x7F).map { QuantizedFormats.e4m3(UInt8($0)) }
    private static let e2m1Positive: [Float] = [0, 0.5, 1, 1.5, 2, 3, 4, 6]

    /// Nearest code in an increasing table, ties to the even code; values past the end saturate.
    private static func nearest(_ m: Float, _ table: [Float]) -> Int {
        var lo = 0, hi = table.count - 1
        if m >= table[hi] { return hi }
        while hi - lo > 1 {
            let mid = (lo + hi) / 2
            if table[mid] <= m { lo = mid } else { hi = mid }
        }
        let dl = m - table[lo], dh = table[hi] - m
        if dl < dh { return lo }
        if dh < dl { return hi }
        return lo % 2 == 0 ? lo : hi
    }

    /// FP8 E4M3FN code of `v` (round to nearest even, saturating at ±448; NaN → 0x7F).
    public static func e4m3(_ v: Float) -> UInt8 {
        if v.isNaN { return 0x7F }
        let c = UInt8(nearest(abs(v), e4m3Positive))
        return v.sign == .minus && c != 0 ? c | 0x80 : c
    }

    /// E2M1 nibble of `v` (round to nearest even, saturating at ±6).
    public static func e2m1(_ v: Float) -> UInt8 {
        let c = UInt8(nearest(abs(v), e2m1Positive))
        return v < 0 && c != 0 ? c | 8 : c
    }

    /// E8M0 exponent byte for a block with largest magnitude `amax` and format maximum `qmax`.
    public static func e8m0Scale(amax: Float, qmax: Float) -> UInt8 {
        guard amax > 0, amax.isFinite else { return 127 }
        let e = Int((log2(Double(amax) / Double(qmax))).rounded(.up))
        return UInt8(max(0, min(254, e + 127)))
    }

    /// `w` `[rows, cols]` → E4M3 codes `[rows, cols]` and E8M0 scales `[ceil(rows/128), ceil(cols/128)]`.
    public static func fp8Blocks(_ w: [Float], rows: Int, cols: Int, block: Int = 128) -> (codes: [UInt8], scales: [UInt8]) {
        precondition(w.count == rows * cols)
        let br = (rows + block - 1) / block, bc = (cols + block - 1) / block
        var scales = [UInt8](repeating: 127, count: br * bc)
        var codes = [UInt8](repeating: 0, count: rows * cols)
        for i in 0..<br {
            for j in 0..<bc {
                let r = (i * block)..<min(rows, (i + 1) * block), c = (j * block)..<min(cols, (j + 1) * block)
                var amax: Float = 0
                for y in r { for x in c { amax = max(amax, abs(w[y * cols + x])) } }
                let s = e8m0Scale(amax: amax, qmax: 448)
                scales[i * bc + j] = s
                let inv = 1 / QuantizedFormats.e8m0(s)
                for y in r { for x in c { codes[y * cols + x] = e4m3(w[y * cols + x] * inv) } }
            }
        }
        return (codes, scales)
    }

    /// `w` `[rows, cols]` (cols % 32 == 0) → packed E2M1 `[rows, cols/2]` (low nibble first)
    /// and E8M0 scales `[rows, cols/32]`.
    public static func fp4Groups(_ w: [Float], rows: Int, cols: Int, group: Int = 32) -> (packed: [UInt8], scales: [UInt8]) {
        precondition(w.count == rows * cols && cols % group == 0 && group % 2 == 0)
        var packed = [UInt8](repeating: 0, count: rows * cols / 2)
        var scales = [UInt8](repeating: 127, count: rows * cols / group)
        for r in 0..<rows {
            for g in 0..<(cols / group) {
                let base = r * cols + g * group
                var amax: Float = 0
                for k in 0..<group { amax = max(amax, abs(w[base + k])) }
                let s = e8m0Scale(amax: amax, qmax: 6)
                scales[r * (cols / group) + g] = s
                let inv = 1 / QuantizedFormats.e8m0(s)
                for k in stride(from: 0, to: group, by: 2) {
                    let lo = e2m1(w[base + k] * inv), hi = e2m1(w[base + k + 1] * inv)
                    packed[(base + k) / 2] = lo | (hi << 4)
                }
            }
        }
        return (packed, scales)
    }
}
