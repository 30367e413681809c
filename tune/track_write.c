/* tune/track_write.c — the text writers of tune/track.c (into a loom_buf,
 * base/buf.h): JSON (compact or pretty, numbers as the shortest text that reads back the
 * same) and the subset of YAML that MLflow's meta.yaml files use. */
#include "tune/track_internal.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- JSON text ----------------------------------------------------------- */

static void json_write_string(loom_buf *b, const char *s, size_t n)
{
    loom__buf_append(b, "\"", 1);
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
            loom__buf_append(b, s + start, i - start);
            loom__buf_puts(b, esc);
            start = i + 1;
        }
    }
    loom__buf_append(b, s + start, n - start);
    loom__buf_append(b, "\"", 1);
}

static void json_newline(loom_buf *b, int indent, int depth)
{
    if (!indent)
        return;
    loom__buf_append(b, "\n", 1);
    for (int i = 0; i < indent * depth; i++)
        loom__buf_append(b, " ", 1);
}

/* v as JSON: compact when indent is 0, else pretty; keys in stored order. */
void track_json_write(loom_buf *b, const json_t *v, int indent, int depth)
{
    char num[40];
    size_t i = 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (!json_object_size(v)) {
            loom__buf_puts(b, "{}");
            break;
        }
        loom__buf_puts(b, "{");
        for (void *it = json_object_iter((json_t *)v); it;
             it = json_object_iter_next((json_t *)v, it), i++) {
            if (i)
                loom__buf_puts(b, ",");
            json_newline(b, indent, depth + 1);
            const char *key = json_object_iter_key(it);
            json_write_string(b, key, strlen(key));
            loom__buf_puts(b, indent ? ": " : ":");
            track_json_write(b, json_object_iter_value(it), indent, depth + 1);
        }
        json_newline(b, indent, depth);
        loom__buf_puts(b, "}");
        break;
    }
    case JSON_ARRAY:
        if (!json_array_size(v)) {
            loom__buf_puts(b, "[]");
            break;
        }
        loom__buf_puts(b, "[");
        for (i = 0; i < json_array_size(v); i++) {
            if (i)
                loom__buf_puts(b, ",");
            json_newline(b, indent, depth + 1);
            track_json_write(b, json_array_get(v, i), indent, depth + 1);
        }
        json_newline(b, indent, depth);
        loom__buf_puts(b, "]");
        break;
    case JSON_STRING:
        json_write_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        track_number_text(v, num);
        loom__buf_puts(b, num);
        break;
    case JSON_TRUE:
        loom__buf_puts(b, "true");
        break;
    case JSON_FALSE:
        loom__buf_puts(b, "false");
        break;
    default:
        loom__buf_puts(b, "null");
        break;
    }
}

/* A value as a cell or parameter: strings as they are, numbers shortest,
 * anything else as compact JSON; null as nothing. */
void track_value_text(loom_buf *b, const json_t *v)
{
    if (!v || json_is_null(v))
        return;
    if (json_is_string(v))
        loom__buf_append(b, json_string_value(v), json_string_length(v));
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

static void yaml_double_quoted(loom_buf *b, const char *s)
{
    loom__buf_puts(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            loom__buf_appendf(b, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f)
            loom__buf_appendf(b, "\\x%02x", *p);
        else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f && p[1] != 0x85)
            loom__buf_appendf(b, "\\x%02x", *++p);
        else if (p[0] == 0xef && p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf)) {
            loom__buf_appendf(b, "\\u%s", p[2] == 0xbe ? "fffe" : "ffff");
            p += 2;
        } else
            loom__buf_append(b, (const char *)p, 1);
    }
    loom__buf_puts(b, "\"");
}

/* A string scalar: plain when YAML reads it back as that string, else
 * single-quoted (as PyYAML writes '0'), else double-quoted with escapes. */
static void yaml_scalar(loom_buf *b, const char *s)
{
    if (*s && yaml_is_plain(s)) {
        loom__buf_puts(b, s);
        return;
    }
    if (yaml_needs_escapes(s)) {
        yaml_double_quoted(b, s);
        return;
    }
    loom__buf_puts(b, "'");
    for (const char *p = s; *p; p++)
        loom__buf_append(b, *p == '\'' ? "''" : p, *p == '\'' ? 2 : 1);   /* a quote is doubled */
    loom__buf_puts(b, "'");
}

void track_yaml_kv(loom_buf *b, const char *key, const char *value)
{
    loom__buf_appendf(b, "%s: ", key);
    yaml_scalar(b, value);
    loom__buf_puts(b, "\n");
}

/* file:// URI of an absolute path (Python's Path.as_uri() quoting). */
void track_file_uri(loom_buf *b, const char *path)
{
    loom__buf_puts(b, "file://");
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        int keep = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                   (*p >= '0' && *p <= '9') || strchr("-._~/", *p);
        if (keep)
            loom__buf_append(b, (const char *)p, 1);
        else
            loom__buf_appendf(b, "%%%02X", *p);
    }
}
