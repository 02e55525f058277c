/// File data edits of a PFSEditor: writes, truncation and the block table of a file.
extension PFSEditor {
  // MARK: file data

  func requireData(_ d: DirtyInode) throws(FormatError) {
    guard d.data.meta.type == .regularFile || d.data.meta.type == .symlink else {
      throw FormatError(.editRefused(.noData(inum: d.data.meta.inum)), at: loc("inode \(d.data.meta.inum)"))
    }
  }

  /// Leaves DIRECTDATA: the embedded bytes become the data block at key 0
  /// (`hammer2_inode_chain_sync`). The flag is never set again.
  func leaveDirectData(_ d: DirtyInode) {
    guard d.data.meta.isDirectData else { return }
    let old = d.data.directData
    d.data.meta.opFlags &= ~OpFlags.directData
    d.data.u = [UInt8](repeating: 0, count: H2.embeddedBytes)
    d.table = [:]
    if !old.isEmpty, !old.isAllZero { d.table![0] = .data(logical: old) }
  }

  func logicalBlock(_ d: DirtyInode, _ key: UInt64) throws(FormatError) -> [UInt8] {
    var out: [UInt8]
    switch d.table?[key] {
    case .data(let l)?: out = l
    case .existing(let b)? where b.radix != 0:
      let lsize = b.keybits >= 10 && b.keybits <= 16 ? 1 << Int(b.keybits) : H2.pbufSize
      out = try tx.volume.logicalData(b, logicalSize: lsize)
    default: out = []
    }
    if out.count < H2.pbufSize { out += [UInt8](repeating: 0, count: H2.pbufSize - out.count) }
    return out
  }

  /// The old EOF block may be short: when the file grows past it, rewrite it full size
  /// (`hammer2_extend_file`).
  func growFrom(_ d: DirtyInode, oldSize: UInt64, newSize: UInt64) throws(FormatError) {
    // A full old EOF block is already full size: nothing to rewrite.
    guard newSize > oldSize, oldSize > 0, oldSize & 0xFFFF != 0 else { return }
    let key = (oldSize - 1) & ~0xFFFF
    if key < (newSize - 1) & ~0xFFFF, case .existing(let b)? = d.table?[key], b.radix != 0 {
      d.table![key] = .data(logical: try logicalBlock(d, key))
    }
  }

  /// Writes `bytes` at `offset` of file (or symlink) `inum`, growing it as needed.
  public func write(_ inum: UInt64, at offset: UInt64, _ bytes: [UInt8]) throws(FormatError) {
    let d = try dirty(inum)
    try requireData(d)
    let oldSize = d.data.meta.size
    let (end, overflow) = offset.addingReportingOverflow(UInt64(bytes.count))
    guard !overflow, end < 1 << 62 else {
      throw FormatError(.editRefused(.beyondLargestFile), at: loc("inode \(inum)"))
    }
    let newSize = max(oldSize, end)
    d.modifyTid = modifyTid
    d.touched = true
    if d.data.meta.isDirectData {
      if newSize <= UInt64(H2.embeddedBytes) {
        d.data.u.replaceSubrange(Int(offset)..<Int(end), with: bytes)
        d.data.meta.size = newSize
        return
      }
      leaveDirectData(d)
    }
    try loadTable(d)
    try growFrom(d, oldSize: oldSize, newSize: newSize)
    d.data.meta.size = newSize
    var pos = offset
    var i = 0
    while i < bytes.count {
      let key = pos & ~0xFFFF
      let inBlock = Int(pos - key)
      let n = min(bytes.count - i, H2.pbufSize - inBlock)
      var logical = inBlock == 0 && n == H2.pbufSize ? [] : try logicalBlock(d, key)
      if logical.isEmpty {
        logical = Array(bytes[i..<i + n])
      } else {
        logical.replaceSubrange(inBlock..<inBlock + n, with: bytes[i..<i + n])
      }
      // Blocks before the EOF block, and a full EOF block, are final: write them now
      // so memory stays bounded. A partial EOF block waits (an append may extend it),
      // kept trimmed to the bytes the file has.
      if key < (newSize - 1) & ~0xFFFF || newSize - key >= UInt64(H2.pbufSize) {
        d.table![key] = .data(logical: logical)
        try finalizeData(d, key)
      } else {
        d.table![key] = .data(logical: Array(logical.prefix(Int(newSize - key))))
      }
      pos += UInt64(n)
      i += n
    }
  }

  /// Sets the size of file `inum` (holes when growing).
  public func truncate(_ inum: UInt64, to newSize: UInt64) throws(FormatError) {
    let d = try dirty(inum)
    try requireData(d)
    let oldSize = d.data.meta.size
    d.modifyTid = modifyTid
    d.touched = true
    if d.data.meta.isDirectData {
      if newSize <= UInt64(H2.embeddedBytes) {
        var u = d.data.u
        for k in Int(min(newSize, oldSize))..<H2.embeddedBytes { u[k] = 0 }
        d.data.u = u
        d.data.meta.size = newSize
        return
      }
      leaveDirectData(d)
    }
    try loadTable(d)
    if newSize > oldSize {
      try growFrom(d, oldSize: oldSize, newSize: newSize)
    } else if newSize < oldSize {
      let keep = (newSize + 0xFFFF) & ~0xFFFF
      for key in d.table!.keys where key >= keep { d.table![key] = nil }
      if newSize % 0x10000 != 0 {
        let key = newSize & ~0xFFFF
        if d.table![key] != nil {
          var l = try logicalBlock(d, key)
          for k in Int(newSize - key)..<l.count { l[k] = 0 }
          d.table![key] = .data(logical: l)
        }
      }
    }
    d.data.meta.size = newSize
  }

  /// Compresses and writes one pending data block (hammer2_write_file_core rules).
  func finalizeData(_ d: DirtyInode, _ key: UInt64) throws(FormatError) {
    guard case .data(let logical)? = d.table?[key] else { return }
    let size = d.data.meta.size
    guard key < size else {
      d.table![key] = nil
      return
    }
    let comp = CompressionMethod(rawValue: d.data.meta.compAlgo & 0x0F) ?? .lz4
    let check = CheckMethod(rawValue: d.data.meta.checkAlgo & 0x0F) ?? .xxhash64
    let isEOF = key == (size - 1) & ~0xFFFF
    var psize = H2.pbufSize
    if isEOF {
      let need = Int(min(size - key, UInt64(H2.pbufSize)))
      psize = 1024
      while psize < need { psize *= 2 }
    }
    var input = Array(logical.prefix(psize))
    if input.count < psize { input += [UInt8](repeating: 0, count: psize - input.count) }
    if isEOF, size - key < UInt64(psize) {
      for k in Int(size - key)..<psize { input[k] = 0 }
    }
    // Zero blocks become holes unless compression or the check is off (§7.3).
    if comp != .none, check != .none, input.isAllZero {
      d.table![key] = nil
      return
    }
    var stored = input
    var method = CompressionMethod.none
    if comp == .lz4 || comp == .zlib || comp == .zstd {
      var level = Int(d.data.meta.compAlgo >> 4)
      if comp == .zlib { level = level == 0 ? 6 : min(max(level, 6), 9) } else if comp == .zstd, level == 0 { level = 3 }
      if let packed = Codecs.compress(comp, input, level: level) {
        var p = 1024
        while p < packed.count { p *= 2 }
        stored = packed + [UInt8](repeating: 0, count: p - packed.count)
        method = comp
      }
    }
    var b = Blockref()
    b.typeRaw = BlockrefType.data.rawValue
    b.methods = check.rawValue << 4 | method.rawValue
    b.key = key
    b.keybits = H2.pbufRadix
    b.mirrorTid = tx.mirrorTid
    b.modifyTid = d.modifyTid
    try tx.placeBlock(&b, bytes: stored, type: .data)
    if check == .none || check == .disabled { b.check = CheckArea() }
    d.table![key] = .existing(b)
  }
}
