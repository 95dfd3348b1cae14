"""The project's harness: QEMU with the test guest, migrations and the
scenarios that the demo, the end-to-end tests, the benchmark and the
libvirt demo run.  Imported as a package: the Makefile and tests/run.sh
put the top of the repository and QEMU's own python/ (for qemu.qmp) on
PYTHONPATH.

    common     paths, HarnessError, log
    vm         one QEMU process, its QMP monitor and the guest's console
    waits      waiting for a migration's status (query-migrate)
    variant    which QEMU, hints on or off, and the label results carry
    scenario   one measured migration of the guest under a workload
    netns      rate-limited links between network namespaces
    postcopy, chain, soak   scenarios of the end-to-end tests
    combos     hints combined with other features (make reliability):
               base, and the cases by topic: migration, memory, guest
    libvirt, libvirt_demo   two private libvirt daemons, make libvirt-demo
"""
