# Sourced by scripts/java_test.sh and scripts/build_extension_jar.sh (not run on its own).
#
#   java_deps_fetch LIBDIR
#
# Makes the jars of qupath_extension/java-deps.txt available in LIBDIR under their artifact names
# (jeromq.jar, gson.jar, slf4j-api.jar, javafx-base.jar, junit-platform-console-standalone.jar, ...:
# the names Debian's /usr/share/java uses, so STIMAGE_JAVA_JARS=LIBDIR works for the scripts that
# read those). Each jar is downloaded once from Maven Central (STIMAGE_MAVEN, default
# https://repo1.maven.org/maven2) into the cache STIMAGE_JAVA_DEPS_CACHE (default
# ~/.cache/stimage/java-deps, Maven's folder layout) and checked, on download and on every use,
# against the sha256 pinned in java-deps.txt; a download is also checked against the .sha1 (and
# .sha256, where there is one) that Maven Central publishes beside it. Also checks that the bundled
# jnacl is the version JeroMQ's POM asks for.
# Returns non-zero with a message naming the jar and the fix when a jar cannot be had or does not
# match; callers decide whether that is a skip or a failure.

JAVA_DEPS_FILE="${JAVA_DEPS_FILE:-qupath_extension/java-deps.txt}"

# The lines "role coords sha256 gradle" of java-deps.txt (no comments, no catalog lines).
java_deps_list() {
    awk '$1 ~ /^(bundle|provided|fx|test)$/ { print $1, $2, $3, $4 }' "$JAVA_DEPS_FILE"
}

# Maven path of a jar (or, with a second argument "pom", its POM) from group:artifact:version[:classifier].
_java_dep_path() {
    local g a v c
    IFS=: read -r g a v c <<<"$1"
    if [[ "${2:-}" == pom ]]; then
        echo "${g//.//}/$a/$v/$a-$v.pom"
    else
        echo "${g//.//}/$a/$v/$a-$v${c:+-$c}.jar"
    fi
}

# Downloads URL to FILE (atomically: several builds may share the cache) and checks it against the
# checksums Maven Central publishes beside it, and against SHA256 when given.
_java_dep_download() {
    local url=$1 file=$2 want256=${3:-} tmp got sum
    tmp="$file.part.$$"
    mkdir -p "$(dirname "$file")"
    local code
    code=$(curl -sSL --retry 3 --connect-timeout 20 --max-time 300 -o "$tmp" -w '%{http_code}' "$url") || code=000
    if [[ "$code" != 200 ]]; then
        rm -f "$tmp"
        if [[ "$code" == 404 ]]; then
            echo "java deps: $url is not on Maven Central (404): check the coordinates in $JAVA_DEPS_FILE" >&2
        else
            echo "java deps: cannot download $url (HTTP $code; is Maven Central reachable? set STIMAGE_MAVEN to a mirror)" >&2
        fi
        return 1
    fi
    # .sha1 is published for every artifact; .sha256 for most recent ones
    if ! sum=$(curl -fsSL --retry 3 --connect-timeout 20 --max-time 60 "$url.sha1"); then
        rm -f "$tmp"
        echo "java deps: cannot download $url.sha1, so $url cannot be checked" >&2
        return 1
    fi
    got=$(sha1sum "$tmp" | cut -c1-40)
    if [[ "$got" != "${sum:0:40}" ]]; then
        rm -f "$tmp"
        echo "java deps: $url: sha1 $got, but Maven Central publishes ${sum:0:40}: a corrupt or altered download" >&2
        return 1
    fi
    if sum=$(curl -fsSL --connect-timeout 20 --max-time 60 "$url.sha256" 2>/dev/null); then
        got=$(sha256sum "$tmp" | cut -c1-64)
        if [[ "$got" != "${sum:0:64}" ]]; then
            rm -f "$tmp"
            echo "java deps: $url: sha256 $got, but Maven Central publishes ${sum:0:64}" >&2
            return 1
        fi
    fi
    if [[ -n "$want256" ]]; then
        got=$(sha256sum "$tmp" | cut -c1-64)
        if [[ "$got" != "$want256" ]]; then
            rm -f "$tmp"
            echo "java deps: $url: sha256 $got, but $JAVA_DEPS_FILE pins $want256; if the version" >&2
            echo "  there was changed on purpose, put the new jar's sha256 in that file" >&2
            return 1
        fi
    fi
    mv -f "$tmp" "$file"
}

java_deps_fetch() {
    local lib=$1 maven="${STIMAGE_MAVEN:-https://repo1.maven.org/maven2}"
    local cache="${STIMAGE_JAVA_DEPS_CACHE:-$HOME/.cache/stimage/java-deps}"
    local role coords sha gradle path file a rest jeromq_pom jnacl_want
    [[ -f "$JAVA_DEPS_FILE" ]] || { echo "java deps: no $JAVA_DEPS_FILE" >&2; return 1; }
    command -v curl >/dev/null 2>&1 || { echo "java deps: no curl to download the jars (apt-get install curl)" >&2; return 1; }
    mkdir -p "$lib" "$cache"
    while read -r role coords sha gradle; do
        path=$(_java_dep_path "$coords")
        file="$cache/$path"
        if [[ -f "$file" && "$(sha256sum "$file" | cut -c1-64)" != "$sha" ]]; then
            echo "java deps: cached $file does not match the sha256 pinned in $JAVA_DEPS_FILE; downloading it again" >&2
            rm -f "$file"
        fi
        if [[ ! -f "$file" ]]; then
            echo "java deps: downloading $coords" >&2
            _java_dep_download "$maven/$path" "$file" "$sha" || return 1
        fi
        IFS=: read -r _ a rest <<<"$coords"
        ln -sfn "$file" "$lib/$a.jar"
    done < <(java_deps_list)
    # the bundled jnacl must be the version JeroMQ's POM names
    coords=$(java_deps_list | awk '$2 ~ /^org\.zeromq:jeromq:/ { print $2 }')
    jeromq_pom="$cache/$(_java_dep_path "$coords" pom)"
    if [[ ! -f "$jeromq_pom" ]]; then
        _java_dep_download "$maven/$(_java_dep_path "$coords" pom)" "$jeromq_pom" || return 1
    fi
    jnacl_want=$(tr -d '\n ' <"$jeromq_pom" | grep -o '<artifactId>jnacl</artifactId><version>[^<]*' | sed 's/.*<version>//')
    if ! java_deps_list | awk '{ print $2 }' | grep -qx "eu.neilalexander:jnacl:$jnacl_want"; then
        echo "java deps: $coords needs eu.neilalexander:jnacl:${jnacl_want:-?} (its POM), but $JAVA_DEPS_FILE bundles" \
            "$(java_deps_list | awk '$2 ~ /jnacl/ { print $2 }'); make them agree" >&2
        return 1
    fi
}
