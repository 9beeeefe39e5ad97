/*
 * Regression mode for the fuzz targets: the same fuzz_NAME.c linked with
 * this main() instead of libFuzzer, built by the ordinary (sanitizer)
 * build, replays every file of the directories or files it is given
 * through LLVMFuzzerTestOneInput, once each. A crash, a sanitizer report
 * or a leak ends the run non-zero; the tests run it over fuzz/seeds/NAME
 * (tests/test_fuzz_replay.c), so an input that once broke a parser keeps
 * being tried on every ./dev test.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path, unsigned long *n)
{
	FILE *f = fopen(path, "rbe");
	if (!f) {
		perror(path);
		return -1;
	}
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (len == cap) {
			cap = cap ? cap * 2 : 4096;
			uint8_t *nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				fclose(f);
				return -1;
			}
			buf = nb;
		}
		size_t got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf, len);
	free(buf);
	(*n)++;
	return 0;
}

static int replay(const char *path, unsigned long *n)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		perror(path);
		return -1;
	}
	if (!S_ISDIR(st.st_mode))
		return replay_file(path, n);
	struct dirent **ents;
	int k = scandir(path, &ents, NULL, alphasort);
	if (k < 0) {
		perror(path);
		return -1;
	}
	int rc = 0;
	for (int i = 0; i < k; i++) {
		char full[4096];
		if (ents[i]->d_name[0] != '.' &&
		    (size_t)snprintf(full, sizeof(full), "%s/%s", path,
				     ents[i]->d_name) < sizeof(full) &&
		    replay(full, n) < 0)
			rc = -1;
		free(ents[i]);
	}
	free(ents);
	return rc;
}

int main(int argc, char **argv)
{
	unsigned long n = 0;
	int rc = 0;
	for (int i = 1; i < argc; i++)
		if (replay(argv[i], &n) < 0)
			rc = 1;
	printf("replayed %lu inputs\n", n);
	return rc;
}
