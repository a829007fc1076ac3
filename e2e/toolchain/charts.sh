# Helm chart / CRD copies for ./build (sourced by it; versions from versions.env). Charts land in
# $DIR/charts/<chart>-<version>/, CRDs in $DIR/crds/<set>-<version>/*.yaml.

# set_chart_versions VERSION APPVERSION: rewrite the placeholder version/appVersion in Chart.yaml.
set_chart_versions() {
  python3 - "$1" "$2" <<'PY'
import re, sys
version, app = sys.argv[1], sys.argv[2]
s = open("Chart.yaml").read()
s = re.sub(r"(?m)^version:.*$", f"version: {version}", s)
s = re.sub(r"(?m)^appVersion:.*$", f'appVersion: "{app}"', s)
open("Chart.yaml", "w").write(s)
PY
}

fix_crossplane() { set_chart_versions "${1#v}" "${1#v}"; }   # image tag defaults to v<appVersion>

fix_cert_manager() {
  # Up to v1.20 the chart has Chart.template.yaml with v0.0.0 / {{IS_PRERELEASE}} placeholders.
  if [[ -f Chart.template.yaml ]]; then
    sed 's/{{IS_PRERELEASE}}/false/' Chart.template.yaml >Chart.yaml
    rm Chart.template.yaml
  fi
  set_chart_versions "$1" "$1"
}

fix_envoy_gateway() {
  # values.yaml is not committed: upstream (tools/make/helm.mk) runs
  #   GatewayImage=... GatewayImagePullPolicy=IfNotPresent envsubst < values.tmpl.yaml > values.yaml
  GatewayImage=$ENVOY_GATEWAY_IMAGE GatewayImagePullPolicy=IfNotPresent python3 -c '
import os, string
t = open("values.tmpl.yaml").read()
open("values.yaml", "w").write(string.Template(t).substitute(os.environ))'
  set_chart_versions "$1" "$1"
}

# kube-prometheus-stack's dependencies, copied into its charts/ (Helm installs a chart only with them present).
fix_kube_prometheus_stack() {
  local community grafana d
  community=$(moddir "github.com/prometheus-community/helm-charts@$PROMETHEUS_COMMUNITY_CHARTS_VERSION")/charts
  grafana=$(moddir "github.com/grafana-community/helm-charts@$GRAFANA_COMMUNITY_CHARTS_VERSION")/charts/grafana
  for d in "$community/kube-state-metrics" "$community/prometheus-node-exporter" \
    "$community/prometheus-windows-exporter" "$grafana"; do
    cp -r "$d" charts/
  done
  chmod -R u+w charts
}

charts_all() {
  chart crossplane "${CROSSPLANE_VERSION#v}" "$CROSSPLANE_MODULE@$CROSSPLANE_VERSION" cluster/charts/crossplane fix_crossplane
  chart cert-manager "$CERT_MANAGER_VERSION" "github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION" \
    deploy/charts/cert-manager fix_cert_manager
  chart gateway-helm "$ENVOY_GATEWAY_VERSION" "github.com/envoyproxy/gateway@$ENVOY_GATEWAY_VERSION" \
    charts/gateway-helm fix_envoy_gateway
  chart ingress-nginx "$INGRESS_NGINX_CHART_VERSION" "k8s.io/ingress-nginx@$INGRESS_NGINX_MODULE_VERSION" charts/ingress-nginx
  chart kube-prometheus-stack "$KUBE_PROMETHEUS_STACK_VERSION" \
    "github.com/prometheus-community/helm-charts@$PROMETHEUS_COMMUNITY_CHARTS_VERSION" charts/kube-prometheus-stack \
    fix_kube_prometheus_stack
  chart kube-state-metrics "$KUBE_STATE_METRICS_CHART_VERSION" \
    "github.com/prometheus-community/helm-charts@$PROMETHEUS_COMMUNITY_CHARTS_VERSION" charts/kube-state-metrics
}

crd_set() {  # crd_set NAME VERSION MODULE@VER DIR-IN-ZIP
  local dest="$DIR/crds/$1-$2" src
  [[ -d $dest ]] && { log "crds $1 $2: cached ($dest)"; return 0; }
  src=$(moddir "$3")/$4
  rm -rf "$dest.tmp"; mkdir -p "$dest.tmp"
  cp "$src"/*.yaml "$dest.tmp/"
  chmod -R u+w "$dest.tmp"; finish_tree "$dest"
  log "crds $1 $2: copied $(ls "$dest" | wc -l) files to $dest (from $3 $4)"
}

crds_all() {
  crd_set crossplane "${CROSSPLANE_VERSION#v}" "$CROSSPLANE_MODULE@$CROSSPLANE_VERSION" cluster/crds
  crd_set cert-manager "$CERT_MANAGER_VERSION" "github.com/cert-manager/cert-manager@$CERT_MANAGER_VERSION" deploy/crds
  # sum.golang.org lookups for kube-bind are refused by the proxy: skip the checksum DB for it only.
  GONOSUMDB=github.com/kube-bind/kube-bind \
    crd_set kube-bind "$KUBE_BIND_VERSION" "github.com/kube-bind/kube-bind@$KUBE_BIND_VERSION" deploy/crd
  crd_set prometheus-operator "$PROMETHEUS_OPERATOR_VERSION" \
    "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" example/prometheus-operator-crd
}
