// KVCacheDType.swift: how history pages store compressed entries and indexer keys
// (`--kv-cache-dtype`). Rings and compressor tails stay fp32 in every mode: they are a
// constant per sequence; the pages are what grows with the context.
//
//   f32   exact (the default): entries and keys as computed.
//   bf16  entries and keys in bf16 (half the bytes; fp32 arithmetic on read).
//   fp8   the DeepSeek-V4 paper's cache: entries' non-RoPE dims in FP8 E4M3 with a per-entry
//         scale, RoPE dims in BF16 (kernels/kvcache.c); indexer keys one byte per value (7-bit
//         codes, a per-key scale), scored by exact integer dot products (kernels/indexer_lowp.c). Keys fall back to
//         bf16 when index_head_dim is not a multiple of 4.
import CKernels

public enum KVCacheDType: String, CaseIterable, Sendable {
    case f32, bf16, fp8

    /// The stored format of compressed entries.
    var entryFormat: ck_kv_format {
        switch self {
        case .f32: CK_KV_F32
        case .bf16: CK_KV_BF16
        case .fp8: CK_KV_FP8
        }
    }

    /// How indexer keys of width `d` are stored.
    func indexerKeys(width d: Int) -> IndexerKeyFormat {
        switch self {
        case .f32: .f32
        case .bf16: .bf16
        case .fp8: d % 4 == 0 ? .int8 : .bf16
        }
    }
}

/// Stored formats of indexer keys, in tiles of `CK_INDEXER_TILE` entries.
enum IndexerKeyFormat: Sendable {
    case f32, bf16, int8

    /// Bytes of one tile of keys of width `d`.
    func tileBytes(width d: Int) -> Int {
        let L = Int(CK_INDEXER_TILE)
        return switch self {
        case .f32: d * L * 4
        case .bf16: d * L * 2
        case .int8: d * L + L * 4
        }
    }
}

extension DeepSeekV4Config {
    /// Bytes of history pages per token of context with the cache stored as `dtype` (the
    /// engine's real page layout, averaged over a page).
    public func cacheBytesPerToken(dtype: KVCacheDType) -> Double {
        let layout = CacheMap(config: self, dtype: dtype).layout
        return Double(layout.pageBytes) / Double(layout.pageTokens)
    }
}
