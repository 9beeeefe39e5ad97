#include "tests/helpers/fleet.h"
#include "tests/helpers/testutil.h"
#include "agent/ctl/clock.h"
#include "agent/plugin/agentset.h"

#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

void t_fleet_set_grants(struct t_fleet *f, const char *grants)
{
	struct grant_set g;
	struct parley_err err = { 0 };
	cr_assert_eq(grant_set_parse(grants, strlen(grants), NULL, &g, &err), 0,
		     "grants: %s", perr_msg(&err));
	chanmgr_set_grants(&f->cm, &g);
}

static void on_request(struct partition *p, const struct ctl_msg *m,
		       void *ctx)
{
	struct t_fleet *f = ((struct supervisor *)ctx)->owner;
	chanmgr_on_request(p, m, &f->cm);
}

static bool on_tick(void *owner)
{
	return chanmgr_tick(&((struct t_fleet *)owner)->cm);
}

static int on_measured(struct partition *p, void *ctx,
		       struct parley_err *err)
{
	struct t_fleet *f = ((struct supervisor *)ctx)->owner;
	return f->db ? baseline_admit(f->db, p->name, &p->measure, err) : 0;
}

/* Devices' states, audited as the agent does (and charged as it does). */
static void on_device_state(struct partition *p, const char *device,
			    const char *plugin, const char *state,
			    const char *detail, void *ctx)
{
	struct t_fleet *f = ((struct supervisor *)ctx)->owner;
	plugin_audit_state(&f->audit, p->name, device, plugin, state, detail);
}

static void on_gone(struct partition *p, void *owner)
{
	chanmgr_gone(&((struct t_fleet *)owner)->cm, p);
}

void t_fleet_init(struct t_fleet *f, const char *grants)
{
	memset(f, 0, sizeof(*f));
	f->outf = open_memstream(&f->out, &f->outlen);
	f->audf = open_memstream(&f->aud, &f->audlen);
	f->audit.out = f->audf;
	f->sup.out = f->outf;
	f->sup.owner = f;
	f->sup.on_gone = on_gone;
	f->sup.on_tick = on_tick;
	f->sup.tick_ms = 20;
	f->vmm = T_VMM;
	f->dir = t_tmpdir();
	chanmgr_init(&f->cm, &f->audit);
	if (grants)
		t_fleet_set_grants(f, grants);
}

static char *spec_json(struct t_fleet *f, const char *name,
		       const char *image, const char *cmdline,
		       const char *const *config)
{
	char *cfg = strdup("");
	for (unsigned i = 0; config && config[i]; i++) {
		const char *eq = strchr(config[i], '=');
		cr_assert(eq);
		char fname[64], path[96];
		snprintf(fname, sizeof(fname), "%.*s", (int)(eq - config[i]),
			 config[i]);
		snprintf(path, sizeof(path), "%s-%s", name, fname);
		free(t_write(f->dir, path, eq + 1, strlen(eq + 1)));
		char *next;
		cr_assert(asprintf(&next, "%s%s{\"name\":\"%s\",\"path\":\"%s\"}",
				   cfg, i ? "," : "", fname, path) > 0);
		free(cfg);
		cfg = next;
	}
	char *json, vcpus[32] = "";
	if (f->vcpus)
		snprintf(vcpus, sizeof(vcpus), "\"vcpus\":%u,", f->vcpus);
	cr_assert(asprintf(&json, "{\"name\":\"%s\",\"image\":\"%s\","
			   "\"memory\":\"8M\",%s\"cmdline\":\"%s\","
			   "\"config\":[%s],\"disks\":[%s]}", name, image,
			   vcpus, cmdline, cfg, f->disks ? f->disks : "") > 0);
	free(cfg);
	return json;
}

struct partition *t_fleet_add(struct t_fleet *f, const char *name,
			      const char *image, const char *cmdline,
			      const char *const *config, bool expect_fail,
			      struct parley_err *err)
{
	char *json = spec_json(f, name, image, cmdline, config);
	struct part_spec s;
	struct parley_err e = { 0 };
	cr_assert_eq(spec_parse(json, strlen(json), f->dir, &s, &e), 0, "%s",
		     perr_msg(&e));
	free(json);
	static const char *const dirs[] = { PARLEY_BUILD_DIR "/guest", NULL };
	struct part_opts o = {
		.vmm_path = f->vmm, .image_dirs = dirs,
		.on_console = sup_console, .ctx = &f->sup,
		.on_measured = on_measured, .on_request = on_request,
		.on_device_state = on_device_state,
		.start_paused = true,
		.timeout_ms = f->timeout_ms ? f->timeout_ms : 10000,
		/* the fleet's own choice, else the running test's backend */
		.backend = f->backend ? f->backend : t_backend,
	};
	struct partition *p = NULL;
	int rc = partition_create(&s, &o, &p, &e);
	spec_free(&s);
	if (err)
		*err = e;
	if (expect_fail) {
		cr_assert_lt(rc, 0, "%s started", name);
		return NULL;
	}
	cr_assert_eq(rc, 0, "%s: %s", name, perr_msg(&e));
	sup_add(&f->sup, p);
	chanmgr_add(&f->cm, p);
	return p;
}

void t_fleet_go(struct t_fleet *f)
{
	for (unsigned i = 0; i < f->sup.n; i++) {
		struct parley_err err = { 0 };
		if (f->sup.e[i].p->state == PART_PAUSED)
			cr_assert_eq(partition_resume(f->sup.e[i].p, &err), 0,
				     "%s", perr_msg(&err));
	}
}

int t_fleet_run(struct t_fleet *f, int ms)
{
	uint64_t end = mono_now_ns() + (uint64_t)ms * 1000000;
	int live = 1;
	while (live > 0 && mono_now_ns() < end)
		live = sup_step(&f->sup, -1, 20);
	return live;
}

const char *t_fleet_out(struct t_fleet *f)
{
	fflush(f->outf);
	return f->out ? f->out : "";
}

const char *t_fleet_audit(struct t_fleet *f)
{
	fflush(f->audf);
	return f->aud ? f->aud : "";
}

void t_fleet_free(struct t_fleet *f)
{
	sup_free(&f->sup);
	chanmgr_free(&f->cm);
	audit_free(&f->audit);
	fclose(f->outf);
	fclose(f->audf);
	free(f->out);
	free(f->aud);
	t_rmtree(f->dir);
	free(f->dir);
}
