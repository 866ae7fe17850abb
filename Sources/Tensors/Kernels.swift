// Kernels.swift: Swift entry points to the C kernels and the CPU description.
import CKernels
import Foundation

/// Which kernel implementation runs, and what the CPU offers.
public enum KernelSelection {
    /// "avx512" or "scalar".
    public static var implementationName: String { String(cString: ck_impl_name()) }

    /// Forces the scalar reference twins (true) or the best available path (false).
    public static func forceScalar(_ scalar: Bool) {
        _ = ck_force_impl(scalar ? CK_IMPL_SCALAR : CK_IMPL_AUTO)
    }

    /// Names of the CPU features found at run time.
    public static var cpuFeatures: [String] {
        let f = ck_cpu_features()
        let names: [(UInt32, String)] = [
            (UInt32(CK_CPU_AVX2), "avx2"), (UInt32(CK_CPU_FMA), "fma"), (UInt32(CK_CPU_AVX512F), "avx512f"),
            (UInt32(CK_CPU_AVX512BW), "avx512bw"), (UInt32(CK_CPU_AVX512VL), "avx512vl"),
            (UInt32(CK_CPU_AVX512BF16), "avx512bf16"), (UInt32(CK_CPU_AVX512FP16), "avx512fp16"),
            (UInt32(CK_CPU_AVX512VNNI), "avx512vnni"),
        ]
        return names.filter { f & $0.0 != 0 }.map(\.1)
    }
}

/// The kernel thread pool (persistent workers; the calling thread takes part).
public enum KernelThreads {
    /// Starts the pool with `count` threads in all (nil: $DSV4_THREADS, else one per CPU).
    /// Only the first call (or first matrix product) decides; returns the pool's size.
    @discardableResult
    public static func start(count: Int? = nil) -> Int {

        let env = ProcessInfo.processInfo.environment["DSV4_THREADS"].flatMap(Int.init)
        return Int(ck_pool_init(Int32(count ?? env ?? 0)))
    }

    /// Threads in the running pool.
    public static var count: Int { Int(ck_pool_threads()) }

    @inline(__always)
    static func startIfNeeded() {
        if ck_pool_threads() == 1 && !started { started = true; start() }
    }

    nonisolated(unsafe) private static var started = false

    /// Runs `body(i)` for i in 0..<count on the pool (the caller takes part) and returns when
    /// all are done. `body` must be safe to run concurrently for distinct indices.
    public static func parallelFor(_ count: Int, _ body: (Int) -> Void) {
        guard count > 0 else { return }
        startIfNeeded()
        if count == 1 || ck_pool_threads() <= 1 {
            for i in 0..<count { body(i) }
            return
        }
        withoutActuallyEscaping(body) { escaping in
            let box = ClosureBox(escaping)
            let ctx = Unmanaged.passUnretained(box).toOpaque()
            ck_pool_run(Int32(count), { ctx, i in
                Unmanaged<ClosureBox>.fromOpaque(ctx!).takeUnretainedValue().body(Int(i))
            }, ctx)
            withExtendedLifetime(box) {}
        }
    }

    private final class ClosureBox {
        let body: (Int) -> Void
        init(_ body: @escaping (Int) -> Void) { self.body = body }
    }
}

/// One query's attention over gathered keys (V = K) for every head at once, with a sink per
/// head in the softmax denominator. `query` and `out` are `[heads, dim]`.
public func attend(
    query: UnsafePointer<Float>, heads: Int, dim: Int, keys: [UnsafePointer<Float>], sinks: UnsafePointer<Float>, scale: Float,
    into out: UnsafeMutablePointer<Float>
) {
    var scratch = [Float](repeating: 0, count: max(heads * keys.count, 1))
    keys.withUnsafeBufferPointer { kp in
        kp.baseAddress!.withMemoryRebound(to: UnsafePointer<Float>?.self, capacity: keys.count) { k in
            ck_attend(query, heads, dim, k, keys.count, sinks, scale, &scratch, out)
        }
    }
}

/// Σ a[i]·b[i] over n floats.
@inline(__always)
public func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    ck_dot_f32(a, b, n)
}

/// y[i] += alpha·x[i] over n floats.
@inline(__always)
public func axpy(_ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
    ck_axpy_f32(alpha, x, y, n)
}

/// Decodes a bf16 bit pattern.
public func bf16ToFloat(_ bits: UInt16) -> Float { ck_bf16_to_f32(bits) }
/// Rounds to the nearest bf16 (ties to even).
public func floatToBF16(_ value: Float) -> UInt16 { ck_f32_to_bf16(value) }
/// Decodes an IEEE half bit pattern.
public func f16ToFloat(_ bits: UInt16) -> Float { ck_f16_to_f32(bits) }

/// Decodes `count` stored values of `type` at `source` into `destination`.
public func decode(
    _ source: UnsafeRawPointer, type: StorageType, count: Int, into destination: UnsafeMutablePointer<Float>
) {
    ck_to_f32(source, type.kernelType, count, destination)
}
