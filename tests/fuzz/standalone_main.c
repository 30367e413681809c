/* tests/fuzz/standalone_main.c — runs a fuzz target without libFuzzer: every
 * file named on the command line, or every file in a directory named there,
 * is passed once to LLVMFuzzerTestOneInput.  This turns a seed corpus (and
 * any crash file a fuzzer found) into a regression test built with any
 * compiler. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Read a whole file into a buffer of exactly its size (so that AddressSanitizer
 * sees reads past the end).  Returns 0 or an errno. */
static int read_input(const char *path, uint8_t **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f) return errno;
    uint8_t *buf = NULL;
    size_t n = 0;
    int err = 0;
    for (;;) {
        uint8_t chunk[65536];
        size_t got = fread(chunk, 1, sizeof chunk, f);
        if (got) {
            uint8_t *nb = realloc(buf, n + got);
            if (!nb) { err = ENOMEM; break; }
            buf = nb;
            memcpy(buf + n, chunk, got);
            n += got;
        }
        if (got < sizeof chunk) {
            if (ferror(f)) err = EIO;
            break;
        }
    }
    fclose(f);
    if (err) { free(buf); return err; }
    *data = buf;
    *size = n;
    return 0;
}

static int run_file(const char *path)
{
    uint8_t *data = NULL;
    size_t size = 0;
    int err = read_input(path, &data, &size);
    if (err) {
        fprintf(stderr, "%s: %s\n", path, strerror(err));
        return -1;
    }
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Run every regular file of a directory, in name order. */
static int run_dir(const char *dir, int *count)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "%s: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char **nn = realloc(names, (n + 1) * sizeof *names);
        if (!nn || !(nn[n] = malloc(strlen(dir) + strlen(e->d_name) + 2))) {
            names = nn ? nn : names;
            rc = -1;
            break;
        }
        names = nn;
        sprintf(names[n], "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (!rc && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            rc = run_file(names[i]);
            (*count)++;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    int count = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) < 0) {
            fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        int rc = S_ISDIR(st.st_mode) ? run_dir(argv[i], &count) : run_file(argv[i]);
        if (!S_ISDIR(st.st_mode)) count++;
        if (rc) return 1;
    }
    printf("%d inputs ran without a crash\n", count);
    return 0;
}
