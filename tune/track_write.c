/* tune/track_write.c — the text writers of tune/track.c: a growable buffer,
 * JSON (compact or pretty, numbers as the shortest text that reads back the
 * same) and the subset of YAML that MLflow's meta.yaml files use. */
#include "tune/track_internal.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a growable text buffer --------------------------------------------- */

void track_sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void track_sb_puts(sbuf *b, const char *s) { track_sb_add(b, s, strlen(s)); }

__attribute__((format(printf, 2, 3)))
void track_sb_printf(sbuf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        track_sb_add(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->oom = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    track_sb_add(b, big, (size_t)n);
    free(big);
}

void track_sb_free(sbuf *b)
{
    free(b->p);
    *b = (sbuf){0};
}

/* ---- JSON text ----------------------------------------------------------- */

static void json_write_string(sbuf *b, const char *s, size_t n)
{
    track_sb_add(b, "\"", 1);
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        const char *esc = NULL;
        char ubuf[8];
        if (ch == '"')
            esc = "\\\"";
        else if (ch == '\\')
            esc = "\\\\";
        else if (ch == '\n')
            esc = "\\n";
        else if (ch == '\r')
            esc = "\\r";
        else if (ch == '\t')
            esc = "\\t";
        else if (ch < 0x20 || ch == 0x7f) {
            snprintf(ubuf, sizeof ubuf, "\\u%04x", ch);
            esc = ubuf;
        }
        if (esc) {
            track_sb_add(b, s + start, i - start);
            track_sb_puts(b, esc);
            start = i + 1;
        }
    }
    track_sb_add(b, s + start, n - start);
    track_sb_add(b, "\"", 1);
}

static void json_newline(sbuf *b, int indent, int depth)
{
    if (!indent)
        return;
    track_sb_add(b, "\n", 1);
    for (int i = 0; i < indent * depth; i++)
        track_sb_add(b, " ", 1);
}

/* v as JSON: compact when indent is 0, else pretty; keys in stored order. */
void track_json_write(sbuf *b, const json_t *v, int indent, int depth)
{
    char num[40];
    size_t i = 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (!json_object_size(v)) {
            track_sb_puts(b, "{}");
            break;
        }
        track_sb_puts(b, "{");
        for (void *it = json_object_iter((json_t *)v); it;
             it = json_object_iter_next((json_t *)v, it), i++) {
            if (i)
                track_sb_puts(b, ",");
            json_newline(b, indent, depth + 1);
            const char *key = json_object_iter_key(it);
            json_write_string(b, key, strlen(key));
            track_sb_puts(b, indent ? ": " : ":");
            track_json_write(b, json_object_iter_value(it), indent, depth + 1);
        }
        json_newline(b, indent, depth);
        track_sb_puts(b, "}");
        break;
    }
    case JSON_ARRAY:
        if (!json_array_size(v)) {
            track_sb_puts(b, "[]");
            break;
        }
        track_sb_puts(b, "[");
        for (i = 0; i < json_array_size(v); i++) {
            if (i)
                track_sb_puts(b, ",");
            json_newline(b, indent, depth + 1);
            track_json_write(b, json_array_get(v, i), indent, depth + 1);
        }
        json_newline(b, indent, depth);
        track_sb_puts(b, "]");
        break;
    case JSON_STRING:
        json_write_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        track_number_text(v, num);
        track_sb_puts(b, num);
        break;
    case JSON_TRUE:
        track_sb_puts(b, "true");
        break;
    case JSON_FALSE:
        track_sb_puts(b, "false");
        break;
    default:
        track_sb_puts(b, "null");
        break;
    }
}

/* A value as a cell or parameter: strings as they are, numbers shortest,
 * anything else as compact JSON; null as nothing. */
void track_value_text(sbuf *b, const json_t *v)
{
    if (!v || json_is_null(v))
        return;
    if (json_is_string(v))
        track_sb_add(b, json_string_value(v), json_string_length(v));
    else
        track_json_write(b, v, 0, 0);
}

/* ---- YAML (the subset MLflow's meta.yaml files use) --------------------- */

static int yaml_is_plain(const char *s)
{
    static const char *const words[] = {"y", "n", "yes", "no", "true", "false", "on", "off",
                                        "null"};
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_' || *s == '/'))
        return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '.' || *p == '/' || *p == '-'))
            return 0;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (!strcasecmp(s, words[i]))
            return 0;
    return 1;
}

/* Does s hold a character YAML readers refuse raw (controls, C1, U+FFFE/F)? */
static int yaml_needs_escapes(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return 1;
        if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f && p[1] != 0x85)
            return 1;
        if (p[0] == 0xef && p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf))
            return 1;
    }
    return 0;
}

static void yaml_double_quoted(sbuf *b, const char *s)
{
    track_sb_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            track_sb_printf(b, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            track_sb_printf(b, "\\x%02x", *p);
        else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f && p[1] != 0x85)
            track_sb_printf(b, "\\x%02x", *++p);
        else if (p[0] == 0xef && p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf)) {
            track_sb_printf(b, "\\u%s", p[2] == 0xbe ? "fffe" : "ffff");
            p += 2;
        } else
            track_sb_add(b, (const char *)p, 1);
    }
    track_sb_puts(b, "\"");
}

/* A string scalar: plain when YAML reads it back as that string, else
 * single-quoted (as PyYAML writes '0'), else double-quoted with escapes. */
static void yaml_scalar(sbuf *b, const char *s)
{
    if (*s && yaml_is_plain(s)) {
        track_sb_puts(b, s);
        return;
    }
    if (yaml_needs_escapes(s)) {
        yaml_double_quoted(b, s);
        return;
    }
    track_sb_puts(b, "'");
    for (const char *p = s; *p; p++)
        track_sb_add(b, *p == '\'' ? "''" : p, *p == '\'' ? 2 : 1);   /* a quote is doubled */
    track_sb_puts(b, "'");
}

void track_yaml_kv(sbuf *b, const char *key, const char *value)
{
    track_sb_printf(b, "%s: ", key);
    yaml_scalar(b, value);
    track_sb_puts(b, "\n");
}

/* file:// URI of an absolute path (Python's Path.as_uri() quoting). */
void track_file_uri(sbuf *b, const char *path)
{
    track_sb_puts(b, "file://");
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        int keep = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                   (*p >= '0' && *p <= '9') || strchr("-._~/", *p);
        if (keep)
            track_sb_add(b, (const char *)p, 1);
        else
            track_sb_printf(b, "%%%02X", *p);
    }
}
