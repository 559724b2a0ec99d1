/* The native decoder's scanner: every read is bounds-checked against the end of the payload
 * (included once, by _jsoncols.c; ADR 0034). */
#ifndef PANTAU_JSONCOLS_SCAN_H
#define PANTAU_JSONCOLS_SCAN_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_NAME 64

/* A name the decoder matches (a key, kind, field or clock), from configure(). */
typedef struct {
    char s[MAX_NAME];
    Py_ssize_t n;
} Name;

/* n bytes equal? Inline: names and ids are a few bytes, where a call to memcmp cost a third
 * of the decode. */
static inline int same(const void *a, const void *b, Py_ssize_t n) {
    const unsigned char *x = a, *y = b;
    for (Py_ssize_t i = 0; i < n; i++)
        if (x[i] != y[i]) return 0;
    return 1;
}

typedef struct {
    const unsigned char *p, *end;
} Cur;

static inline void ws(Cur *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static inline int lit(Cur *c, unsigned char ch) {
    ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* Per byte inside a string: 0 printable ASCII, 1 the closing quote, 2 anything else (a control
 * or non-ASCII byte, or a backslash: not mine). Filled at import. */
static unsigned char STR_CLASS[256];

/* A string of printable ASCII without escapes; *s, *n: its bytes without the quotes. */
static inline int str(Cur *c, const unsigned char **s, Py_ssize_t *n) {
    ws(c);
    if (c->p >= c->end || *c->p != '"') return 0;
    const unsigned char *q = c->p + 1;
    while (q < c->end && STR_CLASS[*q] == 0) q++;
    if (q >= c->end || *q != '"') return 0;
    *s = c->p + 1;
    *n = q - (c->p + 1);
    c->p = q + 1;
    return 1;
}

/* -?(0|[1-9][0-9]*) within int64, not "-0", and not followed by a fraction or exponent. */
static inline int integer(Cur *c, int64_t *out) {
    ws(c);
    const unsigned char *q = c->p;
    int neg = 0;
    uint64_t acc = 0;
    if (q < c->end && *q == '-') {
        neg = 1;
        q++;
    }
    if (q >= c->end || *q < '0' || *q > '9') return 0;
    if (*q == '0') {
        if (neg) return 0;
        q++;
    } else {
        while (q < c->end && *q >= '0' && *q <= '9') {
            unsigned d = (unsigned)(*q - '0');
            if (acc > (UINT64_MAX - d) / 10) return 0;
            acc = acc * 10 + d;
            q++;
        }
    }
    if (q < c->end && (*q == '.' || *q == 'e' || *q == 'E' || (*q >= '0' && *q <= '9'))) return 0;
    if (neg) {
        if (acc > (uint64_t)INT64_MAX + 1) return 0;
        *out = acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc;
    } else {
        if (acc > (uint64_t)INT64_MAX) return 0;
        *out = (int64_t)acc;
    }
    c->p = q;
    return 1;
}

static inline int is_null(Cur *c) {
    ws(c);
    if (c->end - c->p >= 4 && memcmp(c->p, "null", 4) == 0) {
        c->p += 4;
        return 1;
    }
    return 0;
}

static inline int find(const Name *names, int count, const unsigned char *s, Py_ssize_t n) {
    for (int i = 0; i < count; i++)
        if (names[i].n == n && same(names[i].s, s, n)) return i;
    return -1;
}

/* A key and its colon: the index of the key in names, -1 if none of them. `guess` is tried
 * first, in place (keys nearly always come in the order a producer wrote them last time): a
 * configured name is printable ASCII without quotes or backslashes, so `"name"` at the cursor
 * is exactly that string. */
static inline __attribute__((always_inline)) int key(Cur *c, const Name *names, int count, int guess) {
    const unsigned char *s;
    Py_ssize_t n;
    ws(c);
    if (guess >= 0 && guess < count) {
        const Name *g = &names[guess];
        if (c->end - c->p >= g->n + 2 && c->p[0] == '"' && c->p[g->n + 1] == '"' &&
            same(c->p + 1, g->s, g->n)) {
            c->p += g->n + 2;
            return lit(c, ':') ? guess : -1;
        }
    }
    if (!str(c, &s, &n) || !lit(c, ':')) return -1;
    return find(names, count, s, n);
}

/* After a member: 1 more follow (a comma), 0 the object or array closed, -1 neither. */
static inline int next(Cur *c, unsigned char close) {
    ws(c);
    if (c->p >= c->end) return -1;
    if (*c->p == ',') {
        c->p++;
        return 1;
    }
    if (*c->p == close) {
        c->p++;
        return 0;
    }
    return -1;
}

#endif
