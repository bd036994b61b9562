# Sourced by the setup scripts: install Debian packages that are missing, and only those.
apt_missing() {
    local package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
            || printf '%s\n' "$package"
    done
}

apt_install() {
    local wanted
    mapfile -t wanted < <(apt_missing "$@")
    if [ ${#wanted[@]} -eq 0 ]; then
        return
    fi
    printf '%s: installing %s\n' "${0##*/}" "${wanted[*]}"
    if [ -z "${APT_UPDATED:-}" ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null
}
