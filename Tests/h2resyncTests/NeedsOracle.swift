import H2TestSupport
import Testing

extension Trait where Self == ConditionTrait {
  /// Runs the test only when the oracle corpus is present; else it is skipped, by name,
  /// with a message naming the directory that is missing (tests that need no corpus
  /// carry no such trait and always run).
  static var needsOracle: Self { .enabled(if: Oracle.available, Comment(rawValue: Oracle.skipMessage)) }
}
