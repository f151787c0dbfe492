#!/bin/sh
# netguard list               the provisioner-tagged rules of DOCKER-USER and INPUT (iptables -S)
# netguard remove TAG...      delete every rule commented with one of the TAGs
# netguard replace TAG RULE...  delete TAG's rules, then run each RULE (iptables arguments); first
#                             prune: delete tagged rules naming a bridge that no longer exists
#                             (their network is gone, whichever instance installed them)
# netguard resolvers          the nameservers of the host's resolv.conf (Docker's DNS forwards there)
set -eu
if iptables-nft -w -S DOCKER-USER >/dev/null 2>&1; then
    ipt=iptables-nft
elif iptables-legacy -w -S DOCKER-USER >/dev/null 2>&1; then
    ipt=iptables-legacy
else
    echo "netguard: no DOCKER-USER chain in the nft or legacy tables (does dockerd manage iptables?)" >&2
    exit 3
fi

tagged() {  # the rules of DOCKER-USER and INPUT carrying a provisioner comment, unquoted
    { $ipt -w -S DOCKER-USER; $ipt -w -S INPUT; } | tr -d '"' | grep -F -- '--comment provisioner:' || true
}

delete() {  # delete a listed rule ("-A CHAIN ..."); one another netguard deleted meanwhile is gone too
    spec="${1#-A }"
    # shellcheck disable=SC2086  # a rule is word-split into its arguments
    if ! err="$($ipt -w -D $spec 2>&1)"; then
        # shellcheck disable=SC2086
        if $ipt -w -C $spec 2>/dev/null; then
            echo "$err" >&2
            return 1
        fi
    fi
}

remove() {  # every rule commented exactly "$1"
    tagged | grep -F -- "--comment $1 " | while read -r rule; do
        delete "$rule"
    done
}

prune() {  # every tagged rule naming a bridge (br-<network id>, never reused) this host no longer has
    tagged | while read -r rule; do
        for word in $rule; do
            case "$word" in
                br-*)
                    if [ ! -e "/sys/class/net/$word" ]; then
                        delete "$rule"
                        break
                    fi
                    ;;
            esac
        done
    done
}

if [ "${1:-}" = resolvers ]; then
    awk '$1 == "nameserver" { print $2 }' /etc/resolv.conf
    exit 0
fi

command="${1:-}"
[ $# -gt 0 ] && shift
case "$command" in
    list) tagged ;;
    remove) for tag in "$@"; do remove "$tag"; done ;;
    replace)
        tag="$1"; shift
        prune
        remove "$tag"
        for rule in "$@"; do
            # shellcheck disable=SC2086
            $ipt -w $rule
        done
        ;;
    *) echo "usage: netguard list | remove TAG... | replace TAG RULE... | resolvers" >&2; exit 2 ;;
esac
