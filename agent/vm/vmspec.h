/*
 * VM specs: the JSON file `parley-agent run` takes beside thin partitions'
 * specs (agent/spec.h) for a Linux VM (issue 11). Told apart by "kind":
 *
 *   {
 *     "kind": "vm",                       required: this parser
 *     "name": "guest",                    required, jv_name_valid, < 48
 *     "kernel": "vmlinuz",                required, relative, no ".."
 *     "initramfs": "initramfs.gz",        required, relative, no ".."
 *     "memory": "192M",                   64M..16G in whole MiB (192M)
 *     "vcpus": 1,                         1..8 (1)
 *     "config": [ {"name": "run", "path": "pong.sh"},    1..4 entries,
 *                 {"name": "app.conf", "path": "app.conf"} ]  one "run"
 *     "cmdline": "acpiphp.disable=1",     more kernel parameters: at most
 *                                         127 of [A-Za-z0-9._,=/:+ -]
 *     "accel": "tcg"                      auto|kvm|tcg; absent: the
 *                                         agent's (PARLEY_VM_ACCEL, else
 *                                         auto)
 *   }
 *
 * The key configuration files are what the agent measures on the host
 * (the VM's integrity) and hands to the guest read-only (fw_cfg
 * opt/parley/NAME; "run" is the script the initramfs's init runs, so it
 * comes first). Kernel and initramfs are looked for beneath the spec's
 * directory then --image-dir, config files beneath the spec's directory
 * then --config-dir (agent/beneath.h: no symlink on the way, no escape);
 * the path kept is the one the kernel found, made absolute for QEMU.
 * Every error names the field.
 */
#ifndef PARLEY_AGENT_VM_VMSPEC_H
#define PARLEY_AGENT_VM_VMSPEC_H

#include <stdbool.h>
#include <stddef.h>
#include "agent/vm/vmhost.h"
#include "common/err.h"

#define VMSPEC_MEM_MIN_MIB 64
#define VMSPEC_MEM_MAX_MIB (16u * 1024)
#define VMSPEC_VCPUS_MAX 8

/* Is this spec's JSON a VM's ("kind": "vm")? 1 yes, 0 no (no kind, or
 * "thin", or not JSON at all: the thin parser says what is wrong),
 * -EINVAL for any other kind (err names it). */
int vmspec_is_vm(const char *json, size_t len, struct parley_err *err);

/* Parse and check json[0..len); files resolved beneath base_dir (NULL:
 * none), then image_dirs / config_dirs (NULL-terminated lists, may be
 * NULL). accel_default: VM_ACCEL_* when the spec has no "accel". On
 * error *out is zeroed and err names the field. */
int vmspec_parse(const char *json, size_t len, const char *base_dir,
		 const char *const *image_dirs, const char *const *config_dirs,
		 unsigned accel_default, struct vm_spec *out,
		 struct parley_err *err);

/* Read the file (at most SPEC_FILE_MAX bytes) and parse it with its own
 * directory as base_dir; errors start with the path. */
int vmspec_load(const char *path, const char *const *image_dirs,
		const char *const *config_dirs, unsigned accel_default,
		struct vm_spec *out, struct parley_err *err);

/* The accelerator of VMs whose spec names none (run and serve):
 * PARLEY_VM_ACCEL (auto|kvm|tcg; anything else said on stderr), else
 * auto (KVM where /dev/kvm is usable). */
unsigned vm_accel_default(void);

/* Read a spec file and say whether it is a VM's (vmspec_is_vm). */
int vmspec_file_is_vm(const char *path, struct parley_err *err);

#endif
