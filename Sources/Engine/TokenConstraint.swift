// TokenConstraint.swift: constrained decoding. A constraint follows one choice's output
// token by token and says which next tokens keep it valid (JSON, a forced tool call…).
// The sampler draws from the model's distribution restricted to accepted tokens: greedy
// takes the best accepted token; sampling rejects and redraws, which samples exactly the
// renormalised restricted distribution without scoring every token each step.

/// The state of one choice's constraint.
public protocol TokenConstraint: AnyObject {
    /// Whether `token` may come next.
    func canAccept(_ token: Int) -> Bool
    /// Records that `token` was generated.
    func accept(_ token: Int)
    /// Whether the output may end here (end-of-sequence allowed).
    var canFinish: Bool { get }
    /// An independent copy (for n > 1 choices forked from one prompt).
    func copy() -> any TokenConstraint
    /// A superset of the acceptable next tokens when it is small (structural positions),
    /// else nil. Lets the sampler skip the rest of the vocabulary.
    func candidateTokens() -> [Int]?
}

/// Makes a fresh constraint state for each request.
public protocol TokenConstraintFactory: Sendable {
    func make() -> any TokenConstraint
}
