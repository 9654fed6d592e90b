#!/usr/bin/python3
"""Cockpit Machines in a real browser (headless Chromium through Selenium) against
the cockpit-ws that tests/cockpit_machines.rs started for an unprivileged user whose
session bus has oxvirtd --session on it.

    machines.py URL VM_NAME SHOT_DIR

Every check is read from the page, the way a user sees it. Prints one `STEP ...`
line per check; on the first failure saves a screenshot and the page's HTML under
SHOT_DIR, prints the page text and the browser console, and exits 1. Waits are
bounded (WAIT seconds each). Between steps it prints `WAIT-VIRSH <state>` and reads
a line from stdin: the Rust side checks the domain's real state with virsh there.
"""

import os
import re
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

WAIT = 60
URL, VM, SHOTS = sys.argv[1], sys.argv[2], sys.argv[3]
# cockpit-machines' element ids: vmId(name) = "vm-NAME", actions add the connection.
ROW = f"vm-{VM}-session"


class Failed(Exception):
    pass


def browser():
    o = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,1400", "--lang=en-US"):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Debian's chromium-driver; no Selenium Manager download.
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    d.set_page_load_timeout(WAIT)
    return d


def until(what, probe, limit=WAIT):
    """Polls probe() until it returns something true; fails naming `what`."""
    deadline = time.monotonic() + limit
    last = None
    while time.monotonic() < deadline:
        try:
            last = probe()
            if last:
                return last
        except WebDriverException as e:
            last = e.msg
        time.sleep(0.5)
    raise Failed(f"{what}: not seen within {limit} s (last: {last!r})")


def by_id(d, i):
    found = d.find_elements(By.ID, i)
    return found[0] if found and found[0].is_displayed() else None


def danger_alerts(d):
    """Texts of the error toasts and inline error notifications on the page."""
    return [e.text for e in d.find_elements(By.CSS_SELECTOR, ".pf-c-alert.pf-m-danger")
            if e.is_displayed()]


def no_error_toast(d, where):
    errors = danger_alerts(d)
    if errors:
        raise Failed(f"{where}: error shown: {errors}")
    print(f"STEP no error toast on {where}", flush=True)


def virsh_says(state):
    """Lets the Rust side check the domain's state with virsh; it answers ok or why not."""
    print(f"WAIT-VIRSH {state}", flush=True)
    answer = sys.stdin.readline().strip()
    if answer != "ok":
        raise Failed(f"virsh disagrees with the page: {answer}")


def list_page(d):
    d.get(URL)
    # On hosts whose CPU flags lack vmx/svm (emulated KVM), virt-host-validate says
    # so and Cockpit shows a "Hardware virtualization is disabled" slate first: a
    # user clicks Ignore (remembered in localStorage).
    ignore = until("the VM list or the virtualization slate",
                   lambda: by_id(d, "ignore-hw-virtualization-disabled-btn")
                   or by_id(d, "virtual-machines-listing"))
    if ignore.get_attribute("id") == "ignore-hw-virtualization-disabled-btn":
        print("STEP Cockpit says hardware virtualization is disabled (host CPU flags); Ignore",
              flush=True)
        ignore.click()
    until("the VM list", lambda: by_id(d, "virtual-machines-listing"))


def state_is(d, want):
    e = by_id(d, f"{ROW}-state")
    return e is not None and e.text.strip() == want


def usage(d):
    """(memory used, CPU %) from the usage card's labels, once both are above zero."""
    card = by_id(d, f"vm-{VM}-usage")
    if card is None:
        return None
    text = card.text
    mem = re.search(r"Memory\s+([\d.]+)\s*/\s*([\d.]+)\s*(\w+)", text)
    cpu = re.search(r"CPU\s+([\d.]+)% of (\d+) vCPU", text)
    if not mem or not cpu:
        return None
    used, cpu_pct = float(mem.group(1)), float(cpu.group(1))
    return (text.replace("\n", " "), used, cpu_pct) if used > 0 and cpu_pct > 0 else None


def create_snapshot(d, name=None):
    """Opens the Create snapshot dialog (its name field set to `name` if given)
    and clicks Create; returns the dialog."""
    until("the Create snapshot button", lambda: by_id(d, f"vm-{VM}-add-snapshot-button")).click()
    modal = until("the Create snapshot dialog", lambda: by_id(d, f"vm-{VM}-create-snapshot-modal"))
    if name is not None:
        field = until("the snapshot name field", lambda: by_id(d, "snapshot-create-dialog-name"))
        field.clear()
        field.send_keys(name)
    modal.find_element(By.CSS_SELECTOR, ".pf-c-modal-box__footer button.pf-m-primary").click()
    return modal


def snapshots_work(d):
    """Create snapshot with Cockpit's default name: the dialog closes and the
    Snapshots card lists it (Cockpit re-reads ListDomainSnapshots, GetXMLDesc and
    IsCurrent from the DomainSnapshot objects), running state, current. Then a name
    oxvirt refuses ('.hidden'; Cockpit itself only checks empty and duplicate names):
    libvirt's error shows as a red alert in the dialog, which also shows the error
    detector above sees Cockpit's errors (it is not vacuous)."""
    modal_id = f"vm-{VM}-create-snapshot-modal"
    create_snapshot(d)
    until("the Create snapshot dialog to close", lambda: not by_id(d, modal_id))
    name = until("the snapshot in the Snapshots card",
                 lambda: by_id(d, f"vm-{VM}-snapshot-0-name"))
    until("the snapshot marked current", lambda: by_id(d, f"vm-{VM}-snapshot-0-current"))
    kind = until("the snapshot's VM state", lambda: by_id(d, f"vm-{VM}-snapshot-0-type"))
    if "running" not in kind.text:
        raise Failed(f"snapshot {name.text!r}: VM state {kind.text!r}, expected running")
    print(f"STEP Create snapshot: the Snapshots card lists {name.text!r} (running, current)",
          flush=True)
    no_error_toast(d, "the Snapshots card")

    modal = create_snapshot(d, ".hidden")
    shown = until("the dialog's error for Create snapshot", lambda: danger_alerts(d))
    errors = [e.replace("\n", " ") for e in shown]
    if not any("invalid snapshot name" in e for e in errors):
        raise Failed(f"Create snapshot '.hidden': expected libvirt's 'invalid snapshot name', got {errors}")
    print(f"STEP Create snapshot '.hidden' is refused in the dialog: {errors[0]!r}", flush=True)
    modal.find_element(By.CSS_SELECTOR, ".btn-cancel").click()
    until("the Create snapshot dialog to close", lambda: not by_id(d, modal_id))


def run(d):
    list_page(d)
    until(f"{VM} in the VM list", lambda: by_id(d, f"{ROW}-name"))
    until(f"{VM} shut off in the list", lambda: state_is(d, "Shut off"))
    print(f"STEP the VM list shows {VM} (Shut off, User session)", flush=True)
    no_error_toast(d, "the VM list")

    until("the Run button", lambda: by_id(d, f"{ROW}-run")).click()
    until(f"{VM} running in the list", lambda: state_is(d, "Running"))
    print("STEP Run: the list says Running", flush=True)
    virsh_says("running")

    until(f"{VM}'s name link", lambda: by_id(d, f"{ROW}-name")).click()
    until("the VM's page", lambda: by_id(d, "vm-details"))
    text, used, cpu = until("usage figures above zero on the VM's page", lambda: usage(d))
    print(f"STEP the VM's page shows usage: memory {used}, CPU {cpu}% ({text})", flush=True)
    # Cards that load through their own calls (IP addresses, snapshots) have had
    # their time by now; any failure among them is a toast.
    until("the Snapshots card", lambda: by_id(d, f"vm-{VM}-snapshots"))
    no_error_toast(d, "the running VM's page")
    snapshots_work(d)

    until("the Shut down button", lambda: by_id(d, f"{ROW}-shutdown-button")).click()
    until(f"{VM} shut off on its page", lambda: "Shut off" in by_id(d, "vm-details").text
          and by_id(d, f"{ROW}-run"))
    print("STEP Shut down: the page says Shut off", flush=True)
    virsh_says("shut off")
    no_error_toast(d, "the VM's page after Shut down")

    list_page(d)
    until("the Create VM button", lambda: by_id(d, "create-new-vm")).click()
    dialog = until("the Create VM dialog", lambda: by_id(d, "create-vm-dialog"))
    until("the dialog's name field", lambda: by_id(d, "vm-name"))
    print(f"STEP the Create VM dialog opens: {dialog.text.splitlines()[0]!r}", flush=True)
    no_error_toast(d, "the Create VM dialog")


def main():
    d = browser()
    try:
        run(d)
        print("ALL OK", flush=True)
        return 0
    except (Failed, WebDriverException) as e:
        os.makedirs(SHOTS, exist_ok=True)
        shot = os.path.join(SHOTS, "failure.png")
        d.save_screenshot(shot)
        with open(os.path.join(SHOTS, "failure.html"), "w") as f:
            f.write(d.page_source)
        print(f"FAILED: {e}\nscreenshot: {shot}\n--- page text:", flush=True)
        print(d.find_element(By.TAG_NAME, "body").text)
        print("--- browser console:")
        for entry in d.get_log("browser"):
            print(entry["level"], entry["message"][:400])
        return 1
    finally:
        d.quit()


if __name__ == "__main__":
    sys.exit(main())
