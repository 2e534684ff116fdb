# docker-worker options file for `dw-deploy packer`.
#
#   cp docker_worker_opts_example.sh docker-worker-opts.sh && chmod 600 docker-worker-opts.sh
#   # replace every <...> placeholder below, delete the optional lines you do not need
#   dw-deploy packer -var "docker_worker_opts=docker-worker-opts.sh" [more packer flags...]
#
# dw-deploy reads this file itself; it is never run by a shell. Allowed: `export KEY="value"` or
# `KEY=value` lines, '...' or "..." quotes (inside double quotes only \" \\ \$ \` are escapes),
# comments and blank lines. `$VAR` expansion, command substitution and multi-line values are
# errors, as are unknown keys and placeholders left in place. The file is baked into the image
# as /etc/docker-worker/docker-worker-opts.sh (mode 0600, root) and read by the docker-worker
# service after /etc/default/docker-worker (see packer/app/etc/default-worker), so any key set
# here replaces the default. Keep your filled-in copy out of version control.

# Required: the Taskcluster deployment the worker takes tasks from.
export TASKCLUSTER_ROOT_URL="<https://taskcluster.example.com>"

# Required: the worker's Taskcluster credentials (a client with the scopes to claim work for its
# worker pool, e.g. queue:claim-work:<provisioner-id>/<worker-type>, queue:worker-id:...).
export TASKCLUSTER_CLIENT_ID="<client-id>"
export TASKCLUSTER_ACCESS_TOKEN="<access-token>"

# Optional: the certificate (JSON, in single quotes) when the credentials above are temporary.
# export TASKCLUSTER_CERTIFICATE='<certificate-json>'

# Optional: extra `docker-worker start` options; replaces the default "--host aws". Needed for
# hosts outside EC2 or without a provisioner. Options cannot be quoted (systemd splits them on
# spaces).
export DOCKER_WORKER_OPTS="--provisioner-id <my-provisioner> --worker-type <my-worker-type> --capacity 1"

# Optional: the service's log filter; replaces the default "info".
# export RUST_LOG="info,docker_worker=debug"
