import Hammer2Format

/// Why the engine could not form or analyse a cluster (exit code 3 territory): what went
/// wrong (`kind`) and the image it concerns (nil when it concerns the set of images as a
/// whole). The text says what is wrong in the engine's terms; the CLI adds how to fix it
/// in its own (a flag to use), from the kind.
public struct ClusterError: Error, CustomStringConvertible, Sendable {
  public enum Kind: Sendable, Equatable {
    /// The image's super-root (its PFS table) failed to read; `finding` says where.
    case damagedSuperRoot(finding: String)
    /// No PFS of the wanted name (nil: no PFS besides LOCAL) on any image.
    case noPFS(name: String?)
    /// Several cluster ids are equally present: the caller must choose one.
    case severalClusters(clids: [String])
    /// The same pfs_fsid on two images (`otherImage` and `image`): a cloned image.
    case duplicatedFsid(fsid: String, otherImage: String)
    /// No node of the cluster on the images.
    case noNode(clid: String)
    /// The node to trust is not a node of the cluster.
    case notANode
    /// A cache budget outside the accepted range (MiB).
    case cacheBudgetOutOfRange(mebibytes: Int, range: ClosedRange<Int>)
  }

  public var kind: Kind
  /// The image the error concerns, as given (nil: the set as a whole).
  public var image: String?

  public init(_ kind: Kind, image: String?) {
    self.kind = kind
    self.image = image
  }

  /// The engine's wording (no command-line spelling).
  public var message: String {
    switch kind {
    case .damagedSuperRoot(let f): return "\(f): the super-root of \(image ?? "the image") is damaged"
    case .noPFS(let name): return name.map { "no PFS named \($0) on these images" } ?? "no PFS besides LOCAL on these images"
    case .severalClusters(let clids): return "several clusters are present on these images (\(clids.joined(separator: ", ")))"
    case .duplicatedFsid(let fsid, let other):
      return "pfs_fsid \(fsid) appears on both \(other) and \(image ?? "?"): a duplicated or cloned image; refusing"
    case .noNode(let clid): return "no node of cluster \(clid) on these images"
    case .notANode: return "\(image ?? "?") is not one of the cluster's images"
    case .cacheBudgetOutOfRange(let mib, let range):
      return "a cache budget of \(mib) MiB is outside \(range.lowerBound) to \(range.upperBound) MiB"
    }
  }

  public var description: String { message }
}
