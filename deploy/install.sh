#!/bin/sh
# Install or uninstall stats-log-collector on the cluster KUBECONFIG points at (`make install`, `make uninstall`).
#
#   deploy/install.sh plan       the RBAC bindings the rendered settings call for, one per line
#   deploy/install.sh render     every object that install applies, as YAML (no cluster needed)
#   deploy/install.sh install    create the namespace if missing, then apply what render prints
#   deploy/install.sh uninstall  delete all of it: workloads, the PVC and its data, bindings, the namespace
#                                if install created it, and the ClusterRoles unless another installation
#                                (another INSTALL_NAMESPACE) still uses them
#
# What is installed is `kubectl kustomize` of OVERLAY (default, openshift, procfs, monitoring: a folder of
# deploy/overlays, or the path of your own kustomization) with the COMPONENTS of deploy/components added
# (space- or comma-separated: procfs, monitoring, exec-source, kubelet-proxy). install.sh then places the
# objects in INSTALL_NAMESPACE, labels them as this installation's, fills in IMAGE and STORAGE_CLASS, and
# adds the RBAC bindings the rendered settings need. Variables (the Makefile passes them):
# INSTALL_NAMESPACE (stats-log-collector), OVERLAY (default), COMPONENTS (none), IMAGE, STORAGE_CLASS
# (empty: the cluster's default), KUBECTL (kubectl).
#
# The settings that decide the RBAC are read from the rendered Deployment's `env` entries, so changing one
# in an overlay and running `make install` again is all a change takes: NAMESPACE (where the VMs are),
# MEMSTAT_SOURCE, KUBELET_ACCESS, KUBEVIRT_NAMESPACE, HCO_NAMESPACE, LOG_VERBOSITY; the procfs DaemonSet's
# NAMESPACE when it is rendered; and the OpenShift SCC roles (ClusterRoles annotated
# stats-log-collector/bind-to-service-account), bound to that ServiceAccount when it is rendered.
set -eu
set -f  # NAMESPACE may be `*`: never a glob

here=$(cd "$(dirname "$0")" && pwd)
ns=${INSTALL_NAMESPACE:-stats-log-collector}
overlay=${OVERLAY:-default}
components=$(printf '%s' "${COMPONENTS:-}" | tr ',' ' ')
image=${IMAGE:-}
storage_class=${STORAGE_CLASS:-}
kubectl=${KUBECTL:-kubectl}
part_of="app.kubernetes.io/part-of=stats-log-collector"
instance="app.kubernetes.io/instance=$ns"
bind_annotation="stats-log-collector/bind-to-service-account"

die() {
    echo "deploy/install.sh: $*" >&2
    exit 2
}

# The kustomization to render: OVERLAY, plus COMPONENTS through a kustomization of links (kustomize
# takes no absolute paths, and links let an overlay of your own anywhere be combined too).
kustomize() {
    case $overlay in
        */*) dir=$overlay ;;
        *) dir=$here/overlays/$overlay ;;
    esac
    [ -f "$dir/kustomization.yaml" ] || die "OVERLAY: no kustomization.yaml in $dir"
    dir=$(cd "$dir" && pwd)
    if [ -z "$components" ]; then
        $kubectl kustomize "$dir"
        return
    fi
    work=$(mktemp -d)
    ln -s "$dir" "$work/overlay"
    mkdir "$work/components"
    {
        echo "apiVersion: kustomize.config.k8s.io/v1beta1"
        echo "kind: Kustomization"
        echo "resources: [overlay]"
        echo "components:"
    } >"$work/kustomization.yaml"
    for component in $components; do
        [ "$component" != "$overlay" ] || continue  # the overlay of that name holds it already
        [ -f "$here/components/$component/kustomization.yaml" ] || {
            rm -rf "$work"
            die "COMPONENTS: no component $component in deploy/components"
        }
        ln -s "$here/components/$component" "$work/components/$component"
        echo "  - components/$component" >>"$work/kustomization.yaml"
    done
    status=0
    $kubectl kustomize "$work" || status=$?
    rm -rf "$work"
    return $status
}

# Run AWK-PROGRAM over each object of the rendered YAML (on stdin) with `kind` and `name` (its
# metadata.name) known at each of its lines: the program sees every line, in order.
per_object() {  # AWK-PROGRAM [awk -v assignments...]
    program=$1
    shift
    awk "$@" '
        function flush() { for (i = 1; i <= n; i++) { line = lines[i]; '"$program"' } n = 0; kind = ""; name = "" }
        /^---/ { flush(); next }
        { lines[++n] = $0 }
        /^kind: / { kind = substr($0, 7) }
        /^metadata:/ { meta = 1; next }
        /^[^ ]/ { meta = 0 }
        meta && /^  name: / { name = substr($0, 9) }
        END { flush() }
    '
}

# Every value the rendered KIND NAME gives to the variable VAR, one per line (one per container setting it).
env_values() {  # KIND NAME VAR
    printf '%s\n' "$rendered" | per_object '
        if (kind == k && name == o) {
            if (want && line ~ /^[[:space:]]*value:/) {
                value = line
                sub(/^[[:space:]]*value:[[:space:]]*/, "", value)
                if (value ~ /^".*"$/ || value ~ /^'"'"'.*'"'"'$/) value = substr(value, 2, length(value) - 2)
                print value
            }
            want = (line ~ ("^[[:space:]]*- name: " v "$"))
        }
    ' -v k="$1" -v o="$2" -v v="$3"
}

# One value of VAR in KIND NAME: its containers must agree.
env_value() {  # KIND NAME VAR
    values=$(env_values "$1" "$2" "$3" | sort -u)
    [ "$(printf '%s\n' "$values" | wc -l)" -le 1 ] || die "$2: the containers disagree on $3: $(echo $values)"
    printf '%s' "$values"
}

# Whether the render holds KIND NAME.
rendered_has() {  # KIND NAME
    printf '%s\n' "$rendered" | per_object 'if (kind == k && name == o && line ~ /^kind: /) print "yes"' \
        -v k="$1" -v o="$2" | grep -q yes
}

# "SERVICEACCOUNT CLUSTERROLE" for each ClusterRole annotated with the ServiceAccount to bind it to.
annotated_roles() {
    printf '%s\n' "$rendered" | per_object '
        if (kind == "ClusterRole" && index(line, "    " a ": ") == 1) print substr(line, length(a) + 7) " " name
    ' -v a="$bind_annotation"
}

# The namespaces of a NAMESPACE value, one per line (`*`: all).
namespaces_of() {
    printf '%s\n' "$1" | tr ',' '\n' | sed 's/^[[:space:]]*//; s/[[:space:]]*$//' | grep -v '^$' || true
}

# bind SERVICEACCOUNT CLUSTERROLE NAMESPACE-OR-*: one line of the plan.
bind() {
    printf '%s %s %s\n' "$1" "$2" "$3"
}

bind_in_vm_namespaces() {  # SERVICEACCOUNT CLUSTERROLE NAMESPACE-VALUE
    for vm_ns in $(namespaces_of "$3"); do
        bind "$1" "$2" "$vm_ns"
    done
}

plan() {
    sa=stats-log-collector
    deployment="Deployment stats-log-collector"
    vm_namespaces=$(env_value $deployment NAMESPACE)
    [ -n "$vm_namespaces" ] || die "stats-log-collector: NAMESPACE is empty"
    source=$(env_value $deployment MEMSTAT_SOURCE)
    case $source in
        kubelet)
            bind_in_vm_namespaces "$sa" stats-log-collector-memstat-vms "$vm_namespaces"
            access=$(env_value $deployment KUBELET_ACCESS)
            case ${access:-direct} in
                direct) bind "$sa" stats-log-collector-memstat-kubelet '*' ;;
                proxy) bind "$sa" stats-log-collector-memstat-kubelet-proxy '*' ;;
                *) die "stats-log-collector: KUBELET_ACCESS must be direct or proxy" ;;
            esac
            ;;
        exec)
            bind_in_vm_namespaces "$sa" stats-log-collector-memstat-vms "$vm_namespaces"
            bind_in_vm_namespaces "$sa" stats-log-collector-memstat-exec "$vm_namespaces"
            ;;
        procfs)  # in the Deployment's pod it sees only its own processes; the procfs component is the real use
            bind_in_vm_namespaces "$sa" stats-log-collector-memstat-procfs "$vm_namespaces"
            ;;
        *) die "stats-log-collector: MEMSTAT_SOURCE must be kubelet, exec or procfs" ;;
    esac
    bind_in_vm_namespaces "$sa" stats-log-collector-logs-collector-vms "$vm_namespaces"
    hco=$(env_value $deployment HCO_NAMESPACE)
    handlers=$(env_value $deployment KUBEVIRT_NAMESPACE)
    handlers=${hco:-$handlers}
    [ -n "$handlers" ] || die "stats-log-collector: KUBEVIRT_NAMESPACE is empty"
    bind "$sa" stats-log-collector-logs-collector-handlers "$handlers"
    verbosity=$(env_value $deployment LOG_VERBOSITY)
    if [ -n "$verbosity" ]; then
        if [ -n "$hco" ]; then
            bind "$sa" stats-log-collector-logs-collector-hco-verbosity "$hco"
        else
            bind "$sa" stats-log-collector-logs-collector-kubevirt-verbosity "$handlers"
        fi
    fi
    procfs=stats-log-collector-memstat-procfs
    if rendered_has DaemonSet $procfs; then
        bind_in_vm_namespaces $procfs $procfs "$(env_value DaemonSet $procfs NAMESPACE)"
    fi
    annotated_roles | while read -r account role; do
        if rendered_has ServiceAccount "$account"; then bind "$account" "$role" "$ns"; fi
    done
}

# The binding of one plan line: a RoleBinding in that namespace, or a ClusterRoleBinding for `*`.
binding_yaml() {  # SERVICEACCOUNT CLUSTERROLE SCOPE
    echo "---"
    echo "apiVersion: rbac.authorization.k8s.io/v1"
    if [ "$3" = '*' ]; then
        echo "kind: ClusterRoleBinding"
        echo "metadata:"
        echo "  name: $2.$ns"
    else
        echo "kind: RoleBinding"
        echo "metadata:"
        echo "  name: $2.$ns"
        echo "  namespace: $3"
    fi
    echo "  labels:"
    echo "    ${part_of%%=*}: ${part_of#*=}"
    echo "    ${instance%%=*}: ${instance#*=}"
    echo "roleRef:"
    echo "  apiGroup: rbac.authorization.k8s.io"
    echo "  kind: ClusterRole"
    echo "  name: $2"
    echo "subjects:"
    echo "  - kind: ServiceAccount"
    echo "    name: $1"
    echo "    namespace: $ns"
}

# The render, placed: namespaced objects in INSTALL_NAMESPACE and labelled as this installation's, IMAGE
# and STORAGE_CLASS filled in. ClusterRoles are shared by every installation and left as they are.
placed_yaml() {
    printf '%s\n' "$rendered" | per_object '
        if (i == 1) print "---"
        if (kind != "ClusterRole" && image != "" && (kind == "Deployment" || kind == "DaemonSet") \
            && line ~ /^[[:space:]]*image: /) sub(/image: .*/, "image: " image, line)
        if (kind == "ClusterRole" || line !~ /^  namespace: /) print line
        if (kind != "ClusterRole" && line ~ /^metadata:/) print "  namespace: " ns
        if (kind != "ClusterRole" && line == "  labels:" && top) {
            split(part_of, p, "="); split(inst, q, "=")
            print "    " p[1] ": " p[2]
            print "    " q[1] ": " q[2]
        }
        if (line ~ /^[a-z]/) top = (line ~ /^metadata:/)
        if (kind == "PersistentVolumeClaim" && storage_class != "" && line ~ /^spec:/)
            print "  storageClassName: " storage_class
    ' -v ns="$ns" -v image="$image" -v storage_class="$storage_class" -v part_of="$part_of" \
        -v inst="$instance"
}

namespace_yaml() {
    echo "apiVersion: v1"
    echo "kind: Namespace"
    echo "metadata:"
    echo "  name: $ns"
    echo "  labels:"
    echo "    ${part_of%%=*}: ${part_of#*=}"
    echo "    app.kubernetes.io/created-by: stats-log-collector"  # uninstall deletes only such a namespace
}

render() {
    bindings=$(plan)
    placed_yaml
    printf '%s\n' "$bindings" | while read -r sa role scope; do
        [ -z "$sa" ] || binding_yaml "$sa" "$role" "$scope"
    done
}

# Bindings of this installation that the current plan no longer has (a setting changed since last time).
stale_bindings() {
    wanted=$(plan | while read -r sa role scope; do
        if [ "$scope" = '*' ]; then echo "clusterrolebinding//$role.$ns"; else echo "rolebinding/$scope/$role.$ns"; fi
    done)
    {
        $kubectl get rolebindings --all-namespaces -l "$instance" \
            -o jsonpath='{range .items[*]}rolebinding/{.metadata.namespace}/{.metadata.name}{"\n"}{end}'
        $kubectl get clusterrolebindings -l "$instance" \
            -o jsonpath='{range .items[*]}clusterrolebinding//{.metadata.name}{"\n"}{end}'
    } | while read -r found; do
        [ -z "$found" ] || printf '%s\n' "$wanted" | grep -qxF "$found" || echo "$found"
    done
}

delete_binding() {  # kind/namespace/name
    kind=${1%%/*}
    rest=${1#*/}
    if [ "$kind" = clusterrolebinding ]; then
        $kubectl delete clusterrolebinding "${rest#*/}" --ignore-not-found
    else
        $kubectl delete rolebinding -n "${rest%%/*}" "${rest#*/}" --ignore-not-found
    fi
}

install() {
    manifest=$(render)  # fails before touching the cluster if a setting is unusable
    if ! $kubectl get namespace "$ns" >/dev/null 2>&1; then
        namespace_yaml | $kubectl apply -f -
    fi
    printf '%s\n' "$manifest" | $kubectl apply -f -
    stale_bindings | while read -r binding; do
        delete_binding "$binding"
    done
}

# The kinds any overlay or component may have placed in INSTALL_NAMESPACE, swept by this installation's
# label so that uninstall leaves nothing even when OVERLAY or COMPONENTS changed since install.
SWEPT="deployments.apps,daemonsets.apps,services,serviceaccounts,persistentvolumeclaims,configmaps"
MONITORING="servicemonitors.monitoring.coreos.com,podmonitors.monitoring.coreos.com,prometheusrules.monitoring.coreos.com"

uninstall() {
    placed_yaml | per_object 'if (kind != "ClusterRole") print line' | $kubectl delete --ignore-not-found -f -
    $kubectl delete "$SWEPT" -n "$ns" -l "$instance" --ignore-not-found
    if $kubectl get "$MONITORING" -n "$ns" -o name >/dev/null 2>&1; then  # only where the Operator's CRDs are
        $kubectl delete "$MONITORING" -n "$ns" -l "$instance" --ignore-not-found
    fi
    $kubectl delete rolebindings --all-namespaces -l "$instance" --ignore-not-found
    $kubectl delete clusterrolebindings -l "$instance" --ignore-not-found
    # The ClusterRoles are shared by every installation in the cluster: the last one out deletes them.
    others=$($kubectl get rolebindings,clusterrolebindings --all-namespaces -l "$part_of" -o name)
    if [ -z "$others" ]; then
        $kubectl delete clusterroles -l app.kubernetes.io/name=stats-log-collector --ignore-not-found
    else
        echo "ClusterRoles kept: another installation still uses them"
    fi
    created_by=$($kubectl get namespace "$ns" --ignore-not-found \
        -o jsonpath='{.metadata.labels.app\.kubernetes\.io/created-by}')
    if [ "$created_by" = stats-log-collector ]; then
        $kubectl delete namespace "$ns" --ignore-not-found
    fi
}

case ${1:-} in
    plan | render | install | uninstall) rendered=$(kustomize) ;;
    *) die "usage: $0 plan|render|install|uninstall" ;;
esac
"$1"
