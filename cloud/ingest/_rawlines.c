/* Raw points' line protocol text, formatted natively (docs/adr/0039-one-hash-pass-per-payload.md).
 *
 * The same bytes as raw_lines._format's numpy path (tests/unit/test_ingest_raw_lines_native.py
 * compares them on random rows): per point the series key, then per field the text before it
 * (" name=" or "i,name=", escaped by cloud.influx in Python) and the value's decimal digits as
 * str(int) writes them, then "i ", the time's digits and "\n". Nothing here escapes or judges
 * anything: every byte that is not a digit or '-' comes in from Python.
 *
 * format_lines(keys, key_starts, key_rows, prefixes, values, ts[, floats, float_prefix])
 *   -> (text, lengths)
 *   keys: the series keys concatenated; key_starts: int64[n_keys + 1], key i is
 *   keys[key_starts[i]:key_starts[i + 1]]; key_rows: int64[n]; prefixes: a tuple of k bytes;
 *   values: int64[n * k] (row-major); ts: int64[n]. text: every line, each ending in "\n";
 *   lengths: int64[n] as bytes, each line's length with its "\n".
 *   floats: float64[n], a last field after the integers (the rollups' ratio or wait), written
 *   as float_prefix and repr(float) writes it (PyOS_double_to_string 'r', as float.__repr__),
 *   left out where it is NaN (undefined); an infinity raises ValueError (InfluxDB cannot
 *   store it). cloud.influx.format_rows_at is the same line in Python.
 * Bounds: every key row is checked against n_keys and every buffer's size against n and k
 * before anything is written; the text's size is computed exactly in a first pass.
 * Digits: widths from the bit length and two digits per division (88-90 -> 65-69 ns a 6-field
 * line; docs/performance.md, "Mode (d): /write through http.client").
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

/* 10**k for k = 0..19 (10**19 < 2**64) */
static const uint64_t POW10[20] = {
    1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL, 100000000ULL,
    1000000000ULL, 10000000000ULL, 100000000000ULL, 1000000000000ULL, 10000000000000ULL,
    100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL, 100000000000000000ULL,
    1000000000000000000ULL, 10000000000000000000ULL,
};

/* "00" "01" ... "99": two digits per division (half the divisions of one at a time) */
static const char PAIRS[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static inline uint64_t magnitude(int64_t v) {
    return v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
}

/* bytes of str(v), without a division: log10 from the bit length (1233 / 4096 ~ log10(2)),
 * corrected by one comparison. a | 1 has as many digits as a (a + 1 is never a power of 10
 * for an even a > 0) and a bit length of at least 1. */
static inline Py_ssize_t int_width(int64_t v) {
    uint64_t a = magnitude(v) | 1;
    int bits = 64 - __builtin_clzll(a);
    Py_ssize_t w = (Py_ssize_t)((bits * 1233) >> 12);
    return w + (a >= POW10[w]) + (v < 0);
}

/* writes str(v) (width w from int_width) at out, from its last digit back */
static inline void write_int(char *out, int64_t v, Py_ssize_t w) {
    uint64_t a = magnitude(v);
    char *p = out + w;
    while (a >= 100) {
        uint64_t q = a / 100;
        p -= 2;
        memcpy(p, PAIRS + 2 * (a - q * 100), 2);
        a = q;
    }
    if (a >= 10) {
        p -= 2;
        memcpy(p, PAIRS + 2 * a, 2);
    } else {
        *--p = (char)('0' + a);
    }
    if (v < 0) *--p = '-';
}

static int need(Py_buffer *b, Py_ssize_t items, const char *what) {
    if (b->len != items * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes where %zd int64 were expected", what,
                     b->len, items);
        return -1;
    }
    return 0;
}

static PyObject *format_lines(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer keys = {0}, starts = {0}, rows = {0}, values = {0}, ts = {0}, floats = {0};
    PyObject *prefixes, *float_prefix = NULL, *out = NULL, *lengths = NULL, *result = NULL;
    char **reprs = NULL; /* each float's repr, NULL where it is left out */
    if (!PyArg_ParseTuple(args, "y*y*y*O!y*y*|y*O!", &keys, &starts, &rows, &PyTuple_Type,
                          &prefixes, &values, &ts, &floats, &PyBytes_Type, &float_prefix))
        return NULL;
    Py_ssize_t n = ts.len / (Py_ssize_t)sizeof(int64_t);
    Py_ssize_t k = PyTuple_GET_SIZE(prefixes);
    Py_ssize_t n_keys = starts.len / (Py_ssize_t)sizeof(int64_t) - 1;
    int with_floats = floats.buf != NULL;
    if (need(&ts, n, "ts") || need(&rows, n, "key_rows") || need(&values, n * k, "values") ||
        n_keys < 0)
        goto done;
    if (with_floats && (floats.len != n * (Py_ssize_t)sizeof(double) || float_prefix == NULL)) {
        PyErr_SetString(PyExc_ValueError, "floats: one float64 per point, and a float_prefix");
        goto done;
    }
    const int64_t *st = starts.buf, *kr = rows.buf, *val = values.buf, *tv = ts.buf;
    const char *kb = keys.buf;
    for (Py_ssize_t i = 0; i <= n_keys; i++) {
        if (st[i] < 0 || st[i] > keys.len || (i && st[i] < st[i - 1])) {
            PyErr_SetString(PyExc_ValueError, "key_starts out of order or beyond keys");
            goto done;
        }
    }
    Py_ssize_t fixed = 3; /* "i " and "\n" */
    for (Py_ssize_t j = 0; j < k; j++) {
        PyObject *p = PyTuple_GET_ITEM(prefixes, j);
        if (!PyBytes_Check(p)) {
            PyErr_SetString(PyExc_TypeError, "prefixes must be bytes");
            goto done;
        }
        fixed += PyBytes_GET_SIZE(p);
    }
    if (with_floats) {
        reprs = PyMem_Calloc((size_t)n + 1, sizeof(char *));
        if (!reprs) {
            PyErr_NoMemory();
            goto done;
        }
        const double *fv = floats.buf;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (isnan(fv[i])) continue;
            if (isinf(fv[i])) {
                PyErr_Format(PyExc_ValueError, "%s cannot be stored", fv[i] > 0 ? "inf" : "-inf");
                goto done;
            }
            reprs[i] = PyOS_double_to_string(fv[i], 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
            if (!reprs[i]) goto done;
        }
    }
    Py_ssize_t fp_len = float_prefix ? PyBytes_GET_SIZE(float_prefix) : 0;
    lengths = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int64_t));
    if (!lengths) goto done;
    int64_t *len = (int64_t *)PyBytes_AS_STRING(lengths);
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (kr[i] < 0 || kr[i] >= n_keys) {
            PyErr_Format(PyExc_IndexError, "key row %lld beyond %zd keys", (long long)kr[i],
                         n_keys);
            goto done;
        }
        Py_ssize_t w = (Py_ssize_t)(st[kr[i] + 1] - st[kr[i]]) + fixed + int_width(tv[i]);
        for (Py_ssize_t j = 0; j < k; j++) w += int_width(val[i * k + j]);
        if (reprs && reprs[i]) w += fp_len + (Py_ssize_t)strlen(reprs[i]);
        len[i] = w;
        total += w;
    }
    out = PyBytes_FromStringAndSize(NULL, total);
    if (!out) goto done;
    char *o = PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t kl = (Py_ssize_t)(st[kr[i] + 1] - st[kr[i]]);
        memcpy(o, kb + st[kr[i]], (size_t)kl);
        o += kl;
        for (Py_ssize_t j = 0; j < k; j++) {
            PyObject *p = PyTuple_GET_ITEM(prefixes, j);
            memcpy(o, PyBytes_AS_STRING(p), (size_t)PyBytes_GET_SIZE(p));
            o += PyBytes_GET_SIZE(p);
            int64_t v = val[i * k + j];
            Py_ssize_t w = int_width(v);
            write_int(o, v, w);
            o += w;
        }
        *o++ = 'i';
        if (reprs && reprs[i]) {
            memcpy(o, PyBytes_AS_STRING(float_prefix), (size_t)fp_len);
            o += fp_len;
            size_t r = strlen(reprs[i]);
            memcpy(o, reprs[i], r);
            o += r;
        }
        *o++ = ' ';
        Py_ssize_t w = int_width(tv[i]);
        write_int(o, tv[i], w);
        o += w;
        *o++ = '\n';
    }
    result = PyTuple_Pack(2, out, lengths);
done:
    if (reprs) {
        for (Py_ssize_t i = 0; i < n; i++) PyMem_Free(reprs[i]);
        PyMem_Free(reprs);
    }
    Py_XDECREF(out);
    Py_XDECREF(lengths);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&values);
    PyBuffer_Release(&ts);
    if (floats.buf != NULL) PyBuffer_Release(&floats);
    return result;
}

static PyMethodDef methods[] = {
    {"format_lines", format_lines, METH_VARARGS,
     "Raw points' line protocol text and each line's length."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_rawlines", "Raw points' line protocol, formatted natively.", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__rawlines(void) { return PyModule_Create(&moduledef); }
