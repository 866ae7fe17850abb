// ResidentPages.swift: how many bytes of a mapped range this process has in its own page
// table (/proc/self/pagemap, bit 63 "present"). Unlike mincore, which sees the host's page
// cache shared by every rank, this tells what each rank itself touched.
import Foundation

public enum ResidentPages {
    /// Bytes of the pages overlapping [base, base+count) that are present in this process's
    /// page table; nil when /proc/self/pagemap cannot be read.
    public static func bytes(base: UnsafeRawPointer, count: Int, pagemap fd: Int32) -> Int? {
        guard count > 0 else { return 0 }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let first = Int(bitPattern: base) / page
        let last = (Int(bitPattern: base) + count - 1) / page
        var entries = [UInt64](repeating: 0, count: last - first + 1)
        let want = entries.count * 8
        let got = entries.withUnsafeMutableBytes { pread(fd, $0.baseAddress, want, off_t(first * 8)) }
        guard got == want else { return nil }
        return entries.reduce(0) { $0 + ($1 >> 63 == 1 ? page : 0) }
    }

    /// Resident bytes of each range, summed; nil when pagemap is unreadable.
    public static func bytes(_ ranges: [(base: UnsafeRawPointer, count: Int)]) -> Int? {
        let fd = open("/proc/self/pagemap", O_RDONLY)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var total = 0
        for r in ranges {
            guard let n = bytes(base: r.base, count: r.count, pagemap: fd) else { return nil }
            total += n
        }
        return total
    }
}
