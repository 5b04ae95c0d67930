#!/usr/bin/env bash
# Run (or sourced) by test.sh: install the database servers that tests/servers.py starts on free
# loopback ports. Idempotent and silent when everything is already there; one line per thing it
# installs; a one-line warning (never a failure) when a step does not work; the tests that need
# the missing server then skip and name this script.
#
#   influxd            Debian's `influxdb` package (1.6.7). apt does not start the service here
#                      (policy-rc.d) and the tests never use it: they run their own influxd.
#   victoria-metrics   .cache/test-servers/victoria-metrics, the binary from Debian's trixie .deb.
#                      The package does not install on bookworm, but its binary runs; it is
#                      fetched with a throw-away apt configuration so the machine's apt state
#                      (lists, cache, sources) is left exactly as it was.
#   chromium           Debian's `chromium` and `chromium-driver` (/usr/bin/chromium,
#                      /usr/bin/chromedriver) for the `browser` tests (tests/dashboard/test_dashboard_browser.py);
#                      Selenium is given both paths and never downloads a browser or driver.
#   mosquitto          Debian's `mosquitto` (/usr/sbin/mosquitto), the MQTT broker that
#                      tests/sources/test_mqtt.py starts on a free loopback port. Where apt starts the
#                      system service (no policy-rc.d forbidding it), it is stopped and disabled.

# The body runs in a subshell so that, when sourced, it leaks no variables, `set -e` of the
# caller does not apply to it and nothing in it can exit the caller.
_pdm_setup_test_servers() (
  set -uo pipefail
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  warn() { echo "setup-test-servers: warning: $*; tests needing it will be skipped" >&2; }

  # --- InfluxDB 1.x (influxd) -------------------------------------------------------------
  influx_installed() {
    if command -v dpkg-query >/dev/null 2>&1; then
      [ "$(dpkg-query -W -f='${Status}' influxdb 2>/dev/null)" = "install ok installed" ]
    else
      command -v influxd >/dev/null 2>&1
    fi
  }
  if ! influx_installed; then
    if ! command -v apt-get >/dev/null 2>&1; then
      warn "influxd not found and apt-get unavailable (install InfluxDB 1.x by hand)"
    else
      log="$(mktemp)"
      apt_install() {
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq influxdb >>"$log" 2>&1
      }
      # Try with the current package lists first: `apt-get update` is the slow part.
      if apt_install || { $sudo apt-get update -qq >>"$log" 2>&1 && apt_install; }; then
        echo "setup-test-servers: installed influxdb $(dpkg-query -W -f='${Version}' influxdb 2>/dev/null) (apt)"
      else
        warn "apt-get install influxdb failed: $(grep -E '^(E|W):' "$log" | tail -n 1)"
      fi
      rm -f "$log"
    fi
  fi

  # --- Chromium and chromedriver (browser tests) ---------------------------------------------
  deb_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
  }
  if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    :
  elif ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
    warn "chromium/chromedriver not in /usr/bin and apt-get unavailable (install chromium and chromium-driver by hand)"
  else
    log="$(mktemp)"
    chromium_install() {
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >>"$log" 2>&1
    }
    if { chromium_install || { $sudo apt-get update -qq >>"$log" 2>&1 && chromium_install; }; } \
      && deb_installed chromium && deb_installed chromium-driver; then
      echo "setup-test-servers: installed chromium $(dpkg-query -W -f='${Version}' chromium 2>/dev/null) and chromium-driver (apt)"
    else
      warn "apt-get install chromium chromium-driver failed: $(grep -E '^(E|W):' "$log" | tail -n 1)"
    fi
    rm -f "$log"
  fi

  # --- Mosquitto (MQTT broker) -----------------------------------------------------------------
  if [ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1; then
    :
  elif ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
    warn "mosquitto not found and apt-get unavailable (install the mosquitto broker by hand)"
  else
    log="$(mktemp)"
    mosquitto_install() {
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >>"$log" 2>&1
    }
    if { mosquitto_install || { $sudo apt-get update -qq >>"$log" 2>&1 && mosquitto_install; }; } \
      && deb_installed mosquitto; then
      # Where policy-rc.d forbids it (containers) apt starts nothing; elsewhere the package
      # starts and enables a system broker on port 1883, which the tests never use: stop it.
      if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        $sudo systemctl disable --now mosquitto >>"$log" 2>&1 || true
      elif command -v service >/dev/null 2>&1; then
        $sudo service mosquitto stop >>"$log" 2>&1 || true
        { command -v update-rc.d >/dev/null 2>&1 && $sudo update-rc.d mosquitto disable >>"$log" 2>&1; } || true
      fi
      echo "setup-test-servers: installed mosquitto $(dpkg-query -W -f='${Version}' mosquitto 2>/dev/null) (apt; its system service left stopped)"
    else
      warn "apt-get install mosquitto failed: $(grep -E '^(E|W):' "$log" | tail -n 1)"
    fi
    rm -f "$log"
  fi

  # --- VictoriaMetrics ------------------------------------------------------------------------
  dest_dir="$repo/.cache/test-servers"
  dest="$dest_dir/victoria-metrics"
  [ -x "$dest" ] && return 0
  if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
    warn "VictoriaMetrics not at $dest and apt-get/dpkg-deb unavailable"
    return 0
  fi

  # The machine's own Debian mirror: first URI in the deb822 sources (URIs: lines), else the
  # one-line sources.list format, that is not a security mirror (those carry no trixie suite).
  mirror="$(
    {
      cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs:[[:space:]]*//p' | tr ' \t' '\n\n'
      cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | sed -n 's/^[[:space:]]*deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]\+\).*/\2/p'
    } | grep -E '^(https?|ftp)://' | grep -v -i security | head -n 1
  )"
  mirror="${mirror:-http://deb.debian.org/debian}"

  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064  # expand $tmp now: it is local to this subshell
  trap "rm -rf '$tmp'" EXIT
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/deb"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main" \
    >"$tmp/sources.list"
  # Only temporary lists/cache/sources: the machine's apt state is neither read for sources
  # nor written. APT::Sandbox::User=root: the download dir is ours, not writable by _apt.
  apt_opts=(
    -o "Dir::Etc::SourceList=$tmp/sources.list"
    -o Dir::Etc::SourceParts=/dev/null
    -o "Dir::State::Lists=$tmp/lists"
    -o "Dir::Cache=$tmp/cache"
    -o APT::Sandbox::User=root
  )
  if ! apt-get "${apt_opts[@]}" update -qq >"$tmp/log" 2>&1; then
    warn "apt-get update for trixie ($mirror) failed: $(grep -E '^(E|W):' "$tmp/log" | tail -n 1)"
    return 0
  fi
  if ! (cd "$tmp/deb" && apt-get "${apt_opts[@]}" download -qq victoria-metrics >"$tmp/log" 2>&1); then
    warn "apt-get download victoria-metrics failed: $(grep -E '^(E|W):' "$tmp/log" | tail -n 1)"
    return 0
  fi
  deb=""
  for f in "$tmp"/deb/victoria-metrics_*.deb; do [ -f "$f" ] && deb="$f"; done
  if [ -z "$deb" ] || ! dpkg-deb -x "$deb" "$tmp/x" 2>"$tmp/log" \
    || [ ! -x "$tmp/x/usr/bin/victoria-metrics" ]; then
    warn "could not unpack usr/bin/victoria-metrics from ${deb:-the downloaded .deb}"
    return 0
  fi
  mkdir -p "$dest_dir"
  # Copy then rename, so a concurrent run never sees a half-written binary.
  cp "$tmp/x/usr/bin/victoria-metrics" "$dest.tmp.$$" && mv -f "$dest.tmp.$$" "$dest"
  echo "setup-test-servers: installed VictoriaMetrics $(dpkg-deb -f "$deb" Version) to ${dest#"$repo"/}"
)

_pdm_setup_test_servers || true
unset -f _pdm_setup_test_servers
