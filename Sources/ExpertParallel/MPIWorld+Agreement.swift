// MPIWorld+Agreement.swift: the startup check that every rank runs the same model with the
// same options (a rank on another checkpoint would route differently and corrupt every sum).

extension MPIWorld {
    /// Compares `fields` (name, digest) across ranks, in the order given.
    /// - Throws: `ExpertParallelError.mismatch` naming the first field that differs and the
    ///   ranks whose value differs from rank 0's. Every rank throws the same error.
    public func checkAgreement(_ fields: [(name: String, value: UInt64)]) throws {
        let all = allGather(fields.map { Int64(bitPattern: $0.value) })
        for (i, field) in fields.enumerated() {
            let differ = (1..<size).filter { all[$0][i] != all[0][i] }
            guard differ.isEmpty else {
                let ranks = differ.map { "rank \($0) (\(hex(all[$0][i])))" }.joined(separator: ", ")
                throw ExpertParallelError.mismatch(
                    "the ranks were started with different \(field.name): rank 0 has \(hex(all[0][i])), \(ranks) differ; "
                        + "start every rank on the same model folder and options")
            }
        }
    }

    private func hex(_ v: Int64) -> String { "digest " + String(UInt64(bitPattern: v), radix: 16) }
}
