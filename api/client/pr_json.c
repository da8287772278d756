/* pr_json: see pr_json.h. */
#include "pr_json.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "rt_error.h"
#include "rt_limits.h"
#include "rt_mp.h"

/* The JSON side accepts what the msgpack side can read back, and no more. */
_Static_assert(PR_JSON_DEPTH_MAX == RT_MP_DEPTH_MAX, "JSON and msgpack depth limits differ");

/* ---- JSON -> msgpack ---- */

/* A JSON path for messages ("body.items[2].amount"); cut with "..." past its room. */
#define J2M_PATH_BYTES 128u

struct j2m {
    struct rt_mp_writer w;
    char *err;
    size_t err_cap;
    char path[J2M_PATH_BYTES];
    size_t path_len; /* strlen(path), < J2M_PATH_BYTES. */
};

static void set_err(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t cap, const char *fmt, ...)
{
    if (err == NULL || cap == 0) {
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

/* Append to the path; returns the length to cut back to. */
static size_t path_push(struct j2m *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static size_t path_push(struct j2m *s, const char *fmt, ...)
{
    size_t before = s->path_len;
    assert(before < sizeof(s->path));
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s->path + before, sizeof(s->path) - before, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(s->path) - before) {
        /* Too long to show whole: mark the cut; messages stay readable. */
        memcpy(s->path + sizeof(s->path) - 4, "...", 4);
        s->path_len = sizeof(s->path) - 1;
    } else {
        s->path_len = before + (size_t)n;
    }
    return before;
}

static void path_pop(struct j2m *s, size_t len)
{
    assert(len <= s->path_len);
    s->path_len = len;
    s->path[len] = '\0';
}

static const char *path_text(const struct j2m *s)
{
    return s->path_len > 0 ? s->path : "(top)";
}

static int j2m_value(struct j2m *s, json_t *v, unsigned depth)
{
    assert(v != NULL);
    assert(depth >= 1);
    switch (json_typeof(v)) {
    case JSON_OBJECT:
    case JSON_ARRAY:
        if (depth > PR_JSON_DEPTH_MAX) {
            set_err(s->err, s->err_cap, "%s: nested deeper than %u levels", path_text(s),
                    PR_JSON_DEPTH_MAX);
            return RT_EINVAL;
        }
        break;
    default:
        break;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        size_t n = json_object_size(v);
        if (n > UINT32_MAX) {
            return RT_ETOOLARGE; /* Cannot happen within 1 MiB of text; msgpack's own bound. */
        }
        rt_mp_write_map(&s->w, (uint32_t)n);
        const char *key;
        json_t *item;
        json_object_foreach(v, key, item)
        {
            size_t key_len = strlen(key); /* jansson refuses NUL in keys. */
            rt_mp_write_str(&s->w, key, key_len);
            size_t mark = path_push(s, s->path_len > 0 ? ".%s" : "%s", key);
            int rv = j2m_value(s, item, depth + 1);
            path_pop(s, mark);
            if (rv != 0) {
                return rv;
            }
        }
        return 0;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        if (n > UINT32_MAX) {
            return RT_ETOOLARGE;
        }
        rt_mp_write_array(&s->w, (uint32_t)n);
        for (size_t i = 0; i < n; i++) {
            size_t mark = path_push(s, "[%zu]", i);
            int rv = j2m_value(s, json_array_get(v, i), depth + 1);
            path_pop(s, mark);
            if (rv != 0) {
                return rv;
            }
        }
        return 0;
    }
    case JSON_STRING:
        rt_mp_write_str(&s->w, json_string_value(v), json_string_length(v));
        return 0;
    case JSON_INTEGER: {
        json_int_t i = json_integer_value(v);
        if (i >= 0) {
            rt_mp_write_uint(&s->w, (uint64_t)i);
        } else {
            rt_mp_write_int(&s->w, (int64_t)i);
        }
        return 0;
    }
    case JSON_REAL:
        set_err(s->err, s->err_cap,
                "%s: %g is not an integer: numbers must be whole (amounts are in fen, the "
                "smallest unit)",
                path_text(s), json_real_value(v));
        return RT_EINVAL;
    case JSON_TRUE:
        rt_mp_write_bool(&s->w, true);
        return 0;
    case JSON_FALSE:
        rt_mp_write_bool(&s->w, false);
        return 0;
    case JSON_NULL:
        rt_mp_write_nil(&s->w);
        return 0;
    }
    assert(false && "jansson type not handled");
    return RT_EINTERNAL;
}

int pr_json_to_msgpack(const char *text, size_t len, struct rt_buf *out, char *err, size_t err_cap)
{
    assert(out != NULL);
    assert(text != NULL || len == 0);
    set_err(err, err_cap, "%s", "");
    if (len > PR_JSON_BYTES_MAX) {
        set_err(err, err_cap, "JSON text of %zu bytes is above the limit of %u", len,
                PR_JSON_BYTES_MAX);
        return RT_ETOOLARGE;
    }
    json_error_t jerr;
    /* Duplicate keys are refused: which of two values the user meant is anyone's guess. */
    json_t *root = json_loadb(text != NULL ? text : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        set_err(err, err_cap, "invalid JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                jerr.column);
        return RT_EINVAL;
    }
    const size_t before = out->len;
    struct j2m s = {.err = err, .err_cap = err_cap};
    rt_mp_writer_init(&s.w, out);
    int rv = j2m_value(&s, root, 1);
    json_decref(root);
    if (rv == 0) {
        rv = rt_mp_writer_error(&s.w);
        if (rv == RT_ETOOLARGE) {
            set_err(err, err_cap, "the msgpack form is above the limit of %zu bytes", out->max);
        } else if (rv != 0) {
            set_err(err, err_cap, "%s", rt_strerror(rv));
        }
    }
    if (rv != 0) {
        rt_buf_truncate(out, before);
    }
    return rv;
}

/* ---- msgpack -> JSON ---- */

struct m2j {
    struct rt_buf *out;
    unsigned indent;
    int error; /* Sticky, like rt_mp_writer's. */
};

static void emit(struct m2j *s, const void *bytes, size_t len)
{
    if (s->error == 0) {
        s->error = rt_buf_append(s->out, bytes, len);
    }
}

static void emit_cstr(struct m2j *s, const char *text)
{
    emit(s, text, strlen(text));
}

static void emit_newline(struct m2j *s, unsigned depth)
{
    if (s->indent == 0) {
        return;
    }
    static const char spaces[] = "                ";
    emit(s, "\n", 1);
    /* depth <= RT_MP_DEPTH_MAX and indent <= PR_JSON_INDENT_MAX: at most 128 spaces. */
    for (unsigned i = 0; i < depth; i++) {
        emit(s, spaces, s->indent);
    }
}

static void emit_base64(struct m2j *s, const uint8_t *p, size_t len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    emit(s, "\"", 1);
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        size_t left = len - i;
        if (left > 1) {
            v |= (uint32_t)p[i + 1] << 8;
        }
        if (left > 2) {
            v |= p[i + 2];
        }
        char quad[4] = {alphabet[(v >> 18) & 63], alphabet[(v >> 12) & 63],
                        left > 1 ? alphabet[(v >> 6) & 63] : '=',
                        left > 2 ? alphabet[v & 63] : '='};
        emit(s, quad, sizeof(quad));
    }
    emit(s, "\"", 1);
}

/* Bytes of the UTF-8 sequence starting with @lead, or 0 if @lead cannot start one. */
static size_t utf8_seq_len(uint8_t lead)
{
    if (lead >= 0xc2 && lead <= 0xdf) {
        return 2;
    }
    if (lead >= 0xe0 && lead <= 0xef) {
        return 3;
    }
    if (lead >= 0xf0 && lead <= 0xf4) {
        return 4;
    }
    return 0;
}

static void emit_string(struct m2j *s, const char *str, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    emit(s, "\"", 1);
    size_t i = 0;
    while (i < len && s->error == 0) {
        uint8_t ch = (uint8_t)str[i];
        if (ch >= 0x80) {
            size_t n = utf8_seq_len(ch);
            if (n > 0 && n <= len - i && rt_utf8_valid(str + i, n)) {
                emit(s, str + i, n);
                i += n;
            } else {
                emit(s, "\xef\xbf\xbd", 3); /* U+FFFD for each byte that is not UTF-8. */
                i++;
            }
            continue;
        }
        const char *esc = NULL;
        switch (ch) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        default:
            break;
        }
        if (esc != NULL) {
            emit_cstr(s, esc);
        } else if (ch < 0x20 || ch == 0x7f) {
            char u[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
            emit(s, u, sizeof(u));
        } else {
            emit(s, &ch, 1);
        }
        i++;
    }
    emit(s, "\"", 1);
}

/* The data of an ext value (@raw: its whole encoding, validated). */
static void ext_data(const uint8_t *raw, size_t raw_len, const uint8_t **data, size_t *len)
{
    size_t head;
    switch (raw[0]) {
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        head = 2; /* fixext: tag, type. */
        break;
    case 0xc7:
        head = 3; /* ext8: tag, len8, type. */
        break;
    case 0xc8:
        head = 4;
        break;
    default:
        assert(raw[0] == 0xc9);
        head = 6;
        break;
    }
    assert(raw_len >= head);
    *data = raw + head;
    *len = raw_len - head;
}

static double float_value(const uint8_t *raw, size_t raw_len)
{
    if (raw[0] == 0xca) {
        assert(raw_len == 5);
        uint32_t bits = rt_get_be32(raw + 1);
        float f;
        memcpy(&f, &bits, sizeof(f));
        return f;
    }
    assert(raw[0] == 0xcb && raw_len == 9);
    uint64_t bits = rt_get_be64(raw + 1);
    double d;
    memcpy(&d, &bits, sizeof(d));
    return d;
}

static void m2j_value(struct m2j *s, struct rt_mp_reader *r, unsigned depth);

/* A map key: a str as it is; anything else as its compact JSON text, quoted. */
static void m2j_key(struct m2j *s, struct rt_mp_reader *r, unsigned depth)
{
    if (rt_mp_peek(r) == RT_MP_STR) {
        const char *k;
        uint32_t kl;
        int rv = rt_mp_read_str(r, &k, &kl);
        assert(rv == 0); /* Validated. */
        (void)rv;
        emit_string(s, k, kl);
        return;
    }
    struct rt_buf tmp;
    rt_buf_init(&tmp, s->out->max);
    struct m2j sub = {.out = &tmp, .indent = 0};
    m2j_value(&sub, r, depth);
    if (sub.error != 0) {
        if (s->error == 0) {
            s->error = sub.error;
        }
    } else {
        emit_string(s, (const char *)tmp.data, tmp.len);
    }
    rt_buf_free(&tmp);
}

static void m2j_value(struct m2j *s, struct rt_mp_reader *r, unsigned depth)
{
    assert(depth <= RT_MP_DEPTH_MAX); /* rt_mp_validate bounded the nesting. */
    enum rt_mp_type type = rt_mp_peek(r);
    char num[40];
    int rv = 0;
    switch (type) {
    case RT_MP_NIL:
        rv = rt_mp_read_nil(r);
        emit_cstr(s, "null");
        break;
    case RT_MP_BOOL: {
        bool b = false;
        rv = rt_mp_read_bool(r, &b);
        emit_cstr(s, b ? "true" : "false");
        break;
    }
    case RT_MP_UINT: {
        uint64_t u = 0;
        rv = rt_mp_read_uint(r, &u);
        snprintf(num, sizeof(num), "%" PRIu64, u);
        emit_cstr(s, num);
        break;
    }
    case RT_MP_INT: {
        int64_t i = 0;
        rv = rt_mp_read_int(r, &i);
        snprintf(num, sizeof(num), "%" PRId64, i);
        emit_cstr(s, num);
        break;
    }
    case RT_MP_FLOAT: {
        const uint8_t *raw;
        size_t raw_len;
        rv = rt_mp_read_raw(r, &raw, &raw_len);
        if (rv == 0) {
            double d = float_value(raw, raw_len);
            if (isfinite(d)) {
                snprintf(num, sizeof(num), "%.17g", d);
                emit_cstr(s, num);
            } else {
                emit_cstr(s, "null"); /* JSON has no NaN or infinity. */
            }
        }
        break;
    }
    case RT_MP_STR: {
        const char *str;
        uint32_t len;
        rv = rt_mp_read_str(r, &str, &len);
        if (rv == 0) {
            emit_string(s, str, len);
        }
        break;
    }
    case RT_MP_BIN: {
        const uint8_t *b;
        uint32_t len;
        rv = rt_mp_read_bin(r, &b, &len);
        if (rv == 0) {
            emit_base64(s, b, len);
        }
        break;
    }
    case RT_MP_EXT: {
        const uint8_t *raw, *data;
        size_t raw_len, len;
        rv = rt_mp_read_raw(r, &raw, &raw_len);
        if (rv == 0) {
            ext_data(raw, raw_len, &data, &len);
            emit_base64(s, data, len);
        }
        break;
    }
    case RT_MP_ARRAY: {
        uint32_t n = 0;
        rv = rt_mp_read_array(r, &n);
        emit(s, "[", 1);
        for (uint32_t i = 0; i < n && rv == 0 && s->error == 0; i++) {
            if (i > 0) {
                emit(s, ",", 1);
            }
            emit_newline(s, depth + 1);
            m2j_value(s, r, depth + 1);
        }
        if (n > 0) {
            emit_newline(s, depth);
        }
        emit(s, "]", 1);
        break;
    }
    case RT_MP_MAP: {
        uint32_t n = 0;
        rv = rt_mp_read_map(r, &n);
        emit(s, "{", 1);
        for (uint32_t i = 0; i < n && rv == 0 && s->error == 0; i++) {
            if (i > 0) {
                emit(s, ",", 1);
            }
            emit_newline(s, depth + 1);
            m2j_key(s, r, depth + 1);
            emit(s, s->indent > 0 ? ": " : ":", s->indent > 0 ? 2 : 1);
            m2j_value(s, r, depth + 1);
        }
        if (n > 0) {
            emit_newline(s, depth);
        }
        emit(s, "}", 1);
        break;
    }
    case RT_MP_INVALID:
        rv = RT_EMALFORMED;
        break;
    }
    if (rv != 0 && s->error == 0) {
        s->error = rv; /* Validated input: only a bug gets here. */
    }
}

int pr_json_from_msgpack(const uint8_t *mp, size_t len, unsigned indent, struct rt_buf *out)
{
    assert(out != NULL);
    assert(indent <= PR_JSON_INDENT_MAX);
    if (mp == NULL || len == 0 || rt_mp_validate(mp, len) != 0) {
        return RT_EMALFORMED;
    }
    const size_t before = out->len;
    struct m2j s = {.out = out, .indent = indent};
    struct rt_mp_reader r;
    rt_mp_reader_init(&r, mp, len);
    m2j_value(&s, &r, 0);
    emit(&s, "", 1); /* The NUL, then uncounted. */
    if (s.error != 0) {
        rt_buf_truncate(out, before);
        return s.error;
    }
    assert(rt_mp_remaining(&r) == 0);
    out->len--;
    return 0;
}
