# Sourced by the render scripts: sets $gatehouse to the CLI to run
# ($GATEHOUSE, else target/release/gatehouse, else target/debug/gatehouse)
# and $root to the repository.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
gatehouse="${GATEHOUSE:-}"
if [ -z "$gatehouse" ]; then
  for candidate in "$root/target/release/gatehouse" "$root/target/debug/gatehouse"; do
    if [ -x "$candidate" ]; then gatehouse="$candidate"; break; fi
  done
fi
[ -n "$gatehouse" ] || { echo "render: build the gatehouse CLI first (make build)" >&2; exit 1; }
