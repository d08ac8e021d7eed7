#!/bin/sh
# Install or uninstall stats-log-collector on the cluster KUBECONFIG points at (`make install`, `make uninstall`).
#
#   deploy/install.sh plan       the RBAC bindings the manifests' settings call for, one per line
#   deploy/install.sh render     every object that install applies, as YAML (no cluster needed)
#   deploy/install.sh install    create the namespace if missing, then apply what render prints
#   deploy/install.sh uninstall  delete all of it: workloads, the PVC and its data, bindings, the namespace
#                                if install created it, and the ClusterRoles unless another installation
#                                (another INSTALL_NAMESPACE) still uses them
#
# Variables (the Makefile passes them): INSTALL_NAMESPACE (stats-log-collector), IMAGE, STORAGE_CLASS
# (empty: the cluster's default), WITH_PROCFS (yes: also the memstat procfs DaemonSet), KUBECTL (kubectl).
#
# The settings that decide the RBAC are read from the manifests' `env` entries, so editing a manifest and
# running `make install` again is all a change takes: NAMESPACE (where the VMs are), MEMSTAT_SOURCE,
# KUBEVIRT_NAMESPACE, HCO_NAMESPACE, LOG_VERBOSITY. Entries are read as the manifests write them: a line
# `- name: VAR` followed by a line `value: ...` (tests/deploy checks every entry reads back right).
set -eu
set -f  # NAMESPACE may be `*`: never a glob

here=$(cd "$(dirname "$0")" && pwd)
ns=${INSTALL_NAMESPACE:-stats-log-collector}
image=${IMAGE:-}
storage_class=${STORAGE_CLASS:-}
with_procfs=${WITH_PROCFS:-no}
kubectl=${KUBECTL:-kubectl}
part_of="app.kubernetes.io/part-of=stats-log-collector"
instance="app.kubernetes.io/instance=$ns"

die() {
    echo "deploy/install.sh: $*" >&2
    exit 2
}

# Every value the manifest FILE gives to the variable NAME, one per line (one per container setting it).
env_values() {
    awk -v name="$2" '
        want && /^[[:space:]]*value:/ {
            value = $0
            sub(/^[[:space:]]*value:[[:space:]]*/, "", value)
            sub(/[[:space:]]+#.*$/, "", value)
            if (value ~ /^".*"$/ || value ~ /^'"'"'.*'"'"'$/) value = substr(value, 2, length(value) - 2)
            print value
        }
        { want = 0 }
        $0 ~ "^[[:space:]]*- name: " name "([[:space:]]+#.*)?$" { want = 1 }
    ' "$here/$1"
}

# One value of NAME in FILE: its containers must agree.
env_value() {
    values=$(env_values "$1" "$2" | sort -u)
    [ "$(printf '%s\n' "$values" | wc -l)" -le 1 ] || die "$1: the containers disagree on $2: $(echo $values)"
    printf '%s' "$values"
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
    vm_namespaces=$(env_value deployment.yaml NAMESPACE)
    [ -n "$vm_namespaces" ] || die "deployment.yaml: NAMESPACE is empty"
    source=$(env_value deployment.yaml MEMSTAT_SOURCE)
    case $source in
        kubelet)
            bind_in_vm_namespaces "$sa" stats-log-collector-memstat-vms "$vm_namespaces"
            bind "$sa" stats-log-collector-memstat-kubelet '*'
            ;;
        exec)
            bind_in_vm_namespaces "$sa" stats-log-collector-memstat-vms "$vm_namespaces"
            bind_in_vm_namespaces "$sa" stats-log-collector-memstat-exec "$vm_namespaces"
            ;;
        procfs)  # in the Deployment's pod it sees only its own processes; deploy/memstat-procfs-ds.yaml is the real use
            bind_in_vm_namespaces "$sa" stats-log-collector-memstat-procfs "$vm_namespaces"
            ;;
        *) die "deployment.yaml: MEMSTAT_SOURCE must be kubelet, exec or procfs" ;;
    esac
    bind_in_vm_namespaces "$sa" stats-log-collector-logs-collector-vms "$vm_namespaces"
    hco=$(env_value deployment.yaml HCO_NAMESPACE)
    handlers=$(env_value deployment.yaml KUBEVIRT_NAMESPACE)
    handlers=${hco:-$handlers}
    [ -n "$handlers" ] || die "deployment.yaml: KUBEVIRT_NAMESPACE is empty"
    bind "$sa" stats-log-collector-logs-collector-handlers "$handlers"
    verbosity=$(env_value deployment.yaml LOG_VERBOSITY)
    if [ -n "$verbosity" ]; then
        if [ -n "$hco" ]; then
            bind "$sa" stats-log-collector-logs-collector-hco-verbosity "$hco"
        else
            bind "$sa" stats-log-collector-logs-collector-kubevirt-verbosity "$handlers"
        fi
    fi
    if [ "$with_procfs" = yes ]; then
        procfs_namespaces=$(env_value memstat-procfs-ds.yaml NAMESPACE)
        bind_in_vm_namespaces stats-log-collector-memstat-procfs stats-log-collector-memstat-procfs \
            "$procfs_namespaces"
    fi
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

# A manifest of namespaced objects, placed in INSTALL_NAMESPACE, with IMAGE and STORAGE_CLASS filled in.
workload_yaml() {
    echo "---"
    awk -v ns="$ns" -v image="$image" -v storage_class="$storage_class" -v part_of="$part_of" \
        -v instance="$instance" '
        image != "" && /^[[:space:]]*image:/ { sub(/image:.*/, "image: " image) }
        storage_class != "" && /^[[:space:]]*#storageClassName:/ {
            sub(/#storageClassName:.*/, "storageClassName: " storage_class)
        }
        { print }
        /^metadata:[[:space:]]*$/ {
            print "  namespace: " ns
        }
        /^  labels:[[:space:]]*$/ && top {
            split(part_of, p, "="); split(instance, i, "=")
            print "    " p[1] ": " p[2]
            print "    " i[1] ": " i[2]
        }
        /^[a-z]/ { top = ($0 ~ /^metadata:/) }
    ' "$here/$1"
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
    cat "$here/rbac.yaml"
    workload_yaml deployment.yaml
    workload_yaml virtlet-log-ds.yaml
    [ "$with_procfs" != yes ] || workload_yaml memstat-procfs-ds.yaml
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

uninstall() {
    for file in deployment.yaml virtlet-log-ds.yaml memstat-procfs-ds.yaml; do
        workload_yaml "$file"
    done | $kubectl delete --ignore-not-found -f -
    $kubectl delete rolebindings --all-namespaces -l "$instance" --ignore-not-found
    $kubectl delete clusterrolebindings -l "$instance" --ignore-not-found
    # The ClusterRoles are shared by every installation in the cluster: the last one out deletes them.
    others=$($kubectl get rolebindings,clusterrolebindings --all-namespaces -l "$part_of" -o name)
    if [ -z "$others" ]; then
        $kubectl delete -f "$here/rbac.yaml" --ignore-not-found
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
    plan) plan ;;
    render) render ;;
    install) install ;;
    uninstall) uninstall ;;
    *) die "usage: $0 plan|render|install|uninstall" ;;
esac
