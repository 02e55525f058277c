// The git revision h2resync was built from, for `h2resync --version`.
//
// SwiftPM has no way to pass a value into Swift code at build time short of a build
// plugin or a generated source file, but a C macro can come from the command line:
// tools/install.sh builds with -Xcc -DH2_GIT_REVISION=\"<git describe>\". A plain
// `swift build` leaves it undefined and the revision reads "unknown".
#ifndef CH2VERSION_H
#define CH2VERSION_H

/// The git revision given at build time as H2_GIT_REVISION, or "unknown".
const char *h2_git_revision(void);

#endif
