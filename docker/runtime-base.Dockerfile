# The runtime base scripts/build-images.sh builds where no base image can be pulled: the same
# contents as gcr.io/distroless/cc-debian12:nonroot, taken from this machine's Debian packages.
# glibc's loader and the libraries the three binaries link (libc, libm, libgcc_s: `ldd`), CA
# certificates, /etc/passwd and /etc/group with root and nonroot (65532), /tmp (1777) and
# /home/nonroot; no shell, no package manager. scripts/build-images.sh stages the files under
# target/images/context/base/ and lists their Debian packages and versions in
# /usr/share/doc/loadgate-base/packages.txt.
#
#   scripts/build-images.sh           builds it as localhost/loadgate/runtime-base:bookworm
#
# The three images take it with --build-arg BASE=localhost/loadgate/runtime-base:bookworm.
FROM scratch
COPY target/images/context/base/ /
LABEL org.opencontainers.image.title="loadgate runtime base" \
      org.opencontainers.image.description="glibc, libgcc, CA certificates and a nonroot user from Debian's packages (as distroless cc-debian12)"
USER 65532:65532
