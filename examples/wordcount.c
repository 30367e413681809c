/* examples/wordcount.c — map-reduce word count over a text corpus that every
 * Debian system ships (/usr/share/common-licenses): one count_words task per
 * file (the file's bytes put into the object store), then a tree of
 * merge_counts tasks, all in one graph.  Prints the total and the top words.
 *
 *   wordcount [--nodes K] [--address HOST:PORT|local] [--lib PATH] [FILE...]
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <loom/loom.h>
#include <loom/value.h>

#ifndef LOOM_EXAMPLES_LIB
#define LOOM_EXAMPLES_LIB "libloom_examples.so"
#endif
#define MAX_FILES 512

static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

typedef struct wc { const char *w; size_t n; int64_t k; } wc;

static int by_count(const void *a, const void *b)
{
    const wc *x = a, *y = b;
    if (x->k != y->k) return x->k < y->k ? 1 : -1;
    size_t m = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->w, y->w, m);
    return c ? c : (int)x->n - (int)y->n;
}

int main(int argc, char **argv)
{
    int nodes = 1, nfiles = 0;
    const char *address = "local", *lib_path = LOOM_EXAMPLES_LIB;
    static char *files[MAX_FILES];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--nodes") && i + 1 < argc) nodes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--address") && i + 1 < argc) address = argv[++i];
        else if (!strcmp(argv[i], "--lib") && i + 1 < argc) lib_path = argv[++i];
        else if (nfiles < MAX_FILES) files[nfiles++] = argv[i];
    }
    if (nfiles == 0) {
        const char *dir = "/usr/share/common-licenses";
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d && (e = readdir(d)) && nfiles < MAX_FILES) {
            if (e->d_name[0] == '.') continue;
            char *path = malloc(strlen(dir) + strlen(e->d_name) + 2);
            sprintf(path, "%s/%s", dir, e->d_name);
            files[nfiles++] = path;
        }
        if (d) closedir(d);
    }
    loom_connect_opts co = {.num_nodes = nodes};
    loom_client *c;
    if (loom_connect(address, &co, &c)) return 1;
    loom_ref lib;
    if (loom_library_load(c, lib_path, &lib)) {
        fprintf(stderr, "library: %s\n", loom_last_error(c));
        return 1;
    }
    loom_graph *g;
    loom_graph_new(&g);
    int level[MAX_FILES], n = 0;
    for (int i = 0; i < nfiles; i++) {
        size_t len;
        char *text = read_all(files[i], &len);
        if (!text) continue;
        loom_ref ref;
        if (loom_put(c, text, len, &ref)) {
            fprintf(stderr, "put %s: %s\n", files[i], loom_last_error(c));
            return 1;
        }
        free(text);
        int t = loom_graph_task(g, lib, "count_words", NULL);
        loom_graph_arg_ref(g, t, ref);
        level[n++] = t;
    }
    if (n == 0) {
        fprintf(stderr, "no readable files\n");
        return 1;
    }
    while (n > 1) {
        int m = 0;
        for (int i = 0; i < n; i += 4) { /* merge up to four at a time */
            int t = loom_graph_task(g, lib, "merge_counts", NULL);
            for (int k = i; k < n && k < i + 4; k++) loom_graph_arg_node(g, t, level[k], 0);
            level[m++] = t;
        }
        n = m;
    }
    loom_ref root;
    loom_graph_ref(g, level[0], 0, &root);
    if (loom_graph_submit(c, g, NULL, NULL)) {
        fprintf(stderr, "submit: %s\n", loom_last_error(c));
        return 1;
    }
    loom_value *v;
    if (loom_get(c, root, 120000, &v)) {
        fprintf(stderr, "get: %s\n", loom_last_error(c));
        return 1;
    }
    loom_unpack u;
    loom_unpack_init(&u, loom_value_data(v), loom_value_size(v));
    uint32_t nw = 0;
    loom_unpack_map(&u, &nw);
    wc *all = calloc(nw ? nw : 1, sizeof(wc));
    int64_t total = 0;
    for (uint32_t i = 0; i < nw; i++) {
        loom_unpack_str(&u, &all[i].w, &all[i].n);
        loom_unpack_i64(&u, &all[i].k);
        total += all[i].k;
    }
    qsort(all, nw, sizeof(wc), by_count);
    printf("wordcount: %d files, %d tasks, %lld words, %u distinct\n", nfiles, loom_graph_size(g),
           (long long)total, nw);
    for (uint32_t i = 0; i < nw && i < 10; i++)
        printf("%8lld %.*s\n", (long long)all[i].k, (int)all[i].n, all[i].w);
    free(all);
    loom_value_release(&v);
    loom_graph_destroy(&g);
    loom_disconnect(&c);
    return 0;
}
