# shellcheck shell=bash
# Sourced by scripts/build-images.sh and test/images/smoke.sh: points buildah and podman at one
# image store under target/images/storage, set up as these machines allow containers to run.
#   - storage driver vfs: needs no overlay mounts (each layer is a plain copy; the images are small);
#   - runtime runc with cgroupfs: crun refuses this machine's hybrid cgroup layout;
#   - default_ulimits = []: the sandbox lacks CAP_SYS_RESOURCE, so podman's default raised
#     rlimits fail at start;
#   - events to a file: there is no systemd journal.
# A user's own podman or Docker set-up needs none of this: it only keeps CI's store apart from
# the machine's.
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
engine_dir=$repo_root/target/images
mkdir -p "$engine_dir/storage" "$engine_dir/run"
cat >"$engine_dir/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$engine_dir/storage"
runroot = "$engine_dir/run"
CONF
cat >"$engine_dir/containers.conf" <<CONF
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_STORAGE_CONF=$engine_dir/storage.conf
export CONTAINERS_CONF=$engine_dir/containers.conf
