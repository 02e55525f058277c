/// A change the builder cannot make as asked (bad words, a missing argument, nothing to
/// damage). Failures of the image itself stay `FormatError`s.
public struct BuildError: Error, CustomStringConvertible, Sendable {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}
