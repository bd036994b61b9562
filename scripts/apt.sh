# Sourced by the setup scripts: install Debian packages that are missing, and only those.
apt_missing() {
    local package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
            || printf '%s\n' "$package"
    done
}

# The packages this release's archive has: one it lacks is named and left out, so that one
# missing name never fails the whole list (apt-get would install nothing).
apt_available() {
    local package
    for package in "$@"; do
        if [ -n "$(apt-cache policy "$package" 2>/dev/null | sed -n 's/^ *Candidate: //p' | grep -v '(none)')" ]; then
            printf '%s\n' "$package"
        else
            printf '%s: this release has no package %s: left out\n' "${0##*/}" "$package" >&2
        fi
    done
}

apt_install() {
    local wanted
    mapfile -t wanted < <(apt_missing "$@")
    if [ ${#wanted[@]} -eq 0 ]; then
        return
    fi
    if [ -z "${APT_UPDATED:-}" ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    mapfile -t wanted < <(apt_available "${wanted[@]}")
    if [ ${#wanted[@]} -eq 0 ]; then
        return
    fi
    printf '%s: installing %s\n' "${0##*/}" "${wanted[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null
}
