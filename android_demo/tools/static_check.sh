#!/usr/bin/env bash
# Static check of the Android demo, for CI machines without an Android SDK or Maven access.
# It catches what once broke the app: two runtimes, no wrapper, no x86_64 ABI, the deprecated
# kotlinOptions block, and Kotlin that does not compile against the core.
#   1. Gradle files: LiteRT is the only runtime; the wrapper scripts and properties exist;
#      the ABIs include x86_64 and arm64-v8a; compilerOptions, not kotlinOptions.
#   2. The core compiles (javac); then every app Kotlin source compiles with kotlinc against
#      the core, the real kotlinx-coroutines jar shipped with kotlinc, and compile-only
#      signatures of the Android, AndroidX, CameraX, Compose and LiteRT APIs the app uses
#      (android_demo/tools/stubs/). See android_demo/README.md for what this proves and not.
# Installs its own tools idempotently: JDK/Gson from apt if missing, kotlinc from npm.
# Usage: bash android_demo/tools/static_check.sh   (from anywhere; exit 0 = pass)
set -euo pipefail

KOTLIN_VERSION=2.2.21 # the Kotlin of gradle/libs.versions.toml: check with the compiler the build uses
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEMO="$(dirname "$HERE")"
WORK="${BASISNET_STATIC_CHECK_DIR:-$DEMO/build/static-check}"
TOOLS="${BASISNET_TOOLS_DIR:-$HOME/.cache/basisnet-tools}"
failures=0

fail() { echo "static-check: FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "static-check: ok: $*"; }

# ---- 1. Gradle files ---------------------------------------------------------------------
check_gradle() {
    local app="$DEMO/app/build.gradle.kts" catalog="$DEMO/gradle/libs.versions.toml"
    # Any artifact that ships org.tensorflow.lite.* next to LiteRT is a duplicate-class build failure.
    # Comments are stripped first: they may name what is banned, to say why.
    if sed -E 's@(^|[[:space:]])(#|//).*$@@' "$catalog" "$app" "$DEMO/core/build.gradle.kts" \
        | grep -nEi 'org\.tensorflow|tensorflow[-.]lite|nnapi'; then
        fail "a second runtime (org.tensorflow / tensorflow-lite / NNAPI) is declared above: LiteRT only"
    else ok "no tensorflow-lite / NNAPI dependency"; fi
    grep -q 'com.google.ai.edge.litert' "$catalog" && ok "LiteRT in the version catalog" || fail "LiteRT missing from $catalog"
    if grep -rnE 'org\.tensorflow\.lite|NnApiDelegate' "$DEMO/app/src"; then fail "app sources import the classic TFLite API"; fi
    grep -q 'kotlinOptions' "$app" && fail "app/build.gradle.kts uses the deprecated kotlinOptions block" || ok "no kotlinOptions"
    grep -q 'compilerOptions' "$app" && ok "compilerOptions" || fail "app/build.gradle.kts has no compilerOptions block"
    local abi
    for abi in arm64-v8a x86_64; do
        grep -q "\"$abi\"" "$app" && ok "ABI $abi" || fail "ABI $abi missing from abiFilters"
    done
    local f
    for f in gradlew gradlew.bat gradle/wrapper/gradle-wrapper.properties; do
        [[ -s "$DEMO/$f" ]] && ok "$f present" || fail "$f missing"
    done
    [[ -x "$DEMO/gradlew" ]] || fail "gradlew is not executable"
    grep -qE '^distributionUrl=.*gradle-[0-9.]+-(bin|all)\.zip$' "$DEMO/gradle/wrapper/gradle-wrapper.properties" \
        || fail "gradle-wrapper.properties has no distributionUrl"
    if [[ -e "$DEMO/gradle/wrapper/gradle-wrapper.jar" ]]; then
        # The listing is read whole before grep: `unzip | grep -q` under pipefail fails at
        # random when grep exits first and unzip dies of SIGPIPE (seen on a loaded CI run).
        local listing
        listing=$(unzip -Z1 "$DEMO/gradle/wrapper/gradle-wrapper.jar" 2>&1 || true)
        grep -qx 'org/gradle/wrapper/GradleWrapperMain.class' <<<"$listing" \
            && ok "gradle-wrapper.jar is a wrapper jar" || fail "gradle-wrapper.jar has no GradleWrapperMain"
    else
        echo "static-check: note: gradle/wrapper/gradle-wrapper.jar is absent (see README: run 'gradle wrapper' once)"
    fi
    for f in agp kotlin litert; do
        grep -qE "^$f = \"[0-9]" "$catalog" || fail "version catalog has no '$f' version"
    done
    grep -q "^kotlin = \"$KOTLIN_VERSION\"" "$catalog" \
        || fail "catalog Kotlin differs from static_check.sh KOTLIN_VERSION=$KOTLIN_VERSION: update both together"
}

# ---- 2. Compile ----------------------------------------------------------------------------
install_tools() {
    command -v javac >/dev/null || { apt-get update -qq && apt-get install -y -qq openjdk-17-jdk-headless; }
    [[ -f /usr/share/java/gson.jar ]] || { apt-get update -qq && apt-get install -y -qq libgoogle-gson-java; }
    command -v unzip >/dev/null || { apt-get update -qq && apt-get install -y -qq unzip; }
    KOTLIN_HOME="$TOOLS/kotlin-compiler-$KOTLIN_VERSION/node_modules/kotlin-compiler"
    if [[ ! -x "$KOTLIN_HOME/bin/kotlinc" ]]; then
        command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq npm; }
        # JetBrains' kotlinc distribution (the same bin/ and lib/ as the GitHub release zip), from npm.
        npm install --silent --no-audit --no-fund --prefix "$TOOLS/kotlin-compiler-$KOTLIN_VERSION" \
            "kotlin-compiler@$KOTLIN_VERSION" >/dev/null
    fi
    local version  # read whole before grep, as in compile_all (pipefail and SIGPIPE)
    version=$("$KOTLIN_HOME/bin/kotlinc" -version 2>&1 || true)
    grep -q "kotlinc-jvm $KOTLIN_VERSION" <<<"$version" \
        || { fail "kotlinc $KOTLIN_VERSION did not install"; return 1; }
}

compile_all() {
    local lib="$KOTLIN_HOME/lib" stubs="$HERE/stubs"
    rm -rf "$WORK" && mkdir -p "$WORK/core" "$WORK/stubs" "$WORK/app"
    javac --release 17 -nowarn -d "$WORK/core" -cp /usr/share/java/gson.jar \
        $(find "$DEMO/core/src/main/java" -name '*.java') || { fail "the core does not compile"; return; }
    ok "core compiles"
    local stub_java stub_kt
    stub_java=$(find "$stubs/java" -name '*.java'); stub_kt=$(find "$stubs/kotlin" -name '*.kt')
    # Kotlin stubs see the Java stubs as sources; javac then compiles the Java ones against them.
    "$KOTLIN_HOME/bin/kotlinc" -nowarn -jvm-target 17 -d "$WORK/stubs" \
        -cp "$lib/kotlinx-coroutines-core-jvm.jar" $stub_kt $stub_java 2>"$WORK/stubs.log" \
        || { cat "$WORK/stubs.log" >&2; fail "the API signature stubs do not compile"; return; }
    javac --release 17 -nowarn -d "$WORK/stubs" -cp "$WORK/stubs:$lib/kotlin-stdlib.jar" $stub_java \
        || { fail "the Java API signature stubs do not compile"; return; }
    ok "API signature stubs compile"
    if "$KOTLIN_HOME/bin/kotlinc" -Werror -jvm-target 17 -d "$WORK/app" \
        -cp "$WORK/core:$WORK/stubs:$lib/kotlinx-coroutines-core-jvm.jar:/usr/share/java/gson.jar" \
        $(find "$DEMO/app/src/main/java" -name '*.kt') 2>"$WORK/app.log"; then
        ok "every app Kotlin source compiles against the core and the API signatures ($(find "$DEMO/app/src/main/java" -name '*.kt' | wc -l) files)"
    else
        cat "$WORK/app.log" >&2
        fail "the app's Kotlin does not compile (errors above)"
    fi
}

check_gradle
if install_tools; then compile_all; fi
if (( failures > 0 )); then
    echo "static-check: $failures failure(s)" >&2
    exit 1
fi
echo "static-check: passed"
