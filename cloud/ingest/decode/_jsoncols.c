/* Native column decoder for Pantau JSON batches (docs/adr/0034-native-json-column-decoder.md).
 * This file: the contract's names and limits (configure), the batch's grammar and the module;
 * _jsoncols_scan.h: the bounds-checked scanner; _jsoncols_table.h: the sensor id table.
 *
 * A *filter*, not a judge: it accepts only a strict, simple subset of what json_structs'
 * msgspec decoder accepts (ASCII strings without escapes, integers without fraction or
 * exponent within int64, no duplicate keys, the contract's keys only) and writes the batch's
 * readings straight into column buffers the caller passes. Anything else is "not mine" (None)
 * and goes, whole, to the msgspec path, which passes on what it refuses to the general path.
 *
 * Every name and limit (keys, kinds, value fields in wire order, clocks, MAX_*, the schema
 * version) is passed in once by configure() from Python, derived from contract/; there is no
 * second copy of the contract here.
 *
 * Memory safety: the input is untrusted device bytes. Every read goes through a cursor that is
 * compared with the end of the buffer before it is dereferenced; there is no recursion (the
 * batch's shape is fixed: envelope -> readings -> reading -> values); every write is to a row
 * below the capacity the caller's buffers provide (checked per reading) and to a column below
 * the configured width; the only allocation is the sensor table, sized by the registry.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_KINDS 16
#define MAX_NAMES 32 /* distinct value field names over all kinds; bits of a uint32 mask */
#define MAX_CLOCKS 8
#define N_ENV 6  /* v, gw, seq, sent, readings, clock_offset_ms */
#define N_READ 6 /* sensor, kind, ts, seq, values, clock */

#include "_jsoncols_scan.h"
#include "_jsoncols_table.h"

static struct {
    int ready;
    Name env[N_ENV];
    Name read[N_READ];
    int n_kinds;
    Name kind[MAX_KINDS];
    int8_t kind_code[MAX_KINDS];
    int n_fields[MAX_KINDS];
    int field_slot[MAX_KINDS][MAX_NAMES]; /* wire position -> slot in names */
    uint32_t kind_mask[MAX_KINDS];        /* the slots a kind needs, exactly */
    int n_names;
    Name names[MAX_NAMES];
    int n_clocks;
    Name clocks[MAX_CLOCKS];
    Py_ssize_t width; /* columns of the values buffer (MAX_FIELDS) */
    int64_t max_readings, max_payload, version, lo, hi;
} C;

enum { E_V, E_GW, E_SEQ, E_SENT, E_READINGS, E_OFFSET };
enum { R_SENSOR, R_KIND, R_TS, R_SEQ, R_VALUES, R_CLOCK };

typedef struct {
    int32_t *sensor;
    int8_t *kind;
    int64_t *ts, *seq, *values;
    Py_ssize_t capacity;
} Out;

/* One reading object into row `row`. 1: taken; 0: not mine. */
static int reading(Cur *c, const Table *t, Out *o, Py_ssize_t row, int32_t *last) {
    int64_t vals[MAX_NAMES];
    uint32_t seen = 0, present = 0;
    int k = -1;
    int at = -1, slot = -1;
    if (!lit(c, '{')) return 0;
    for (;;) {
        at = key(c, C.read, N_READ, at + 1);
        if (at < 0 || (seen >> at) & 1) return 0;
        seen |= 1u << at;
        const unsigned char *s;
        Py_ssize_t n;
        switch (at) {
            case R_SENSOR:
                if (!str(c, &s, &n)) return 0;
                o->sensor[row] = table_next(t, s, n, last);
                break;
            case R_KIND:
                if (!str(c, &s, &n) || (k = find(C.kind, C.n_kinds, s, n)) < 0) return 0;
                break;
            case R_TS:
                if (!integer(c, &o->ts[row])) return 0;
                break;
            case R_SEQ:
                if (!integer(c, &o->seq[row])) return 0;
                break;
            case R_CLOCK:
                if (!str(c, &s, &n) || find(C.clocks, C.n_clocks, s, n) < 0) return 0;
                break;
            default: /* R_VALUES */
                if (!lit(c, '{')) return 0;
                for (;;) {
                    slot = key(c, C.names, C.n_names, slot + 1);
                    if (slot < 0 || (present >> slot) & 1 || !integer(c, &vals[slot])) return 0;
                    present |= 1u << slot;
                    int more = next(c, '}');
                    if (more < 0) return 0;
                    if (!more) break;
                }
        }
        int more = next(c, '}');
        if (more < 0) return 0;
        if (!more) break;
    }
    /* sensor, kind, ts, seq and values are required; clock has a default */
    if ((seen & ~(1u << R_CLOCK)) != (1u << N_READ) - 1 - (1u << R_CLOCK)) return 0;
    if (present != C.kind_mask[k]) return 0; /* exactly the kind's field set */
    o->kind[row] = C.kind_code[k];
    int64_t *v = o->values + row * C.width;
    for (int j = 0; j < C.n_fields[k]; j++) {
        int64_t x = vals[C.field_slot[k][j]];
        v[j] = x < C.lo ? C.lo : x > C.hi ? C.hi : x; /* what struct_columns clips to */
    }
    for (Py_ssize_t j = C.n_fields[k]; j < C.width; j++) v[j] = 0;
    return 1;
}

/* The batch; rows from `start`. Returns the readings taken (> 0), or 0: not mine. */
static Py_ssize_t batch(Cur *c, const Table *t, Out *o, Py_ssize_t start, const unsigned char **gw,
                        Py_ssize_t *gw_n, int64_t *seq) {
    uint32_t seen = 0;
    Py_ssize_t count = 0;
    int32_t last = -1; /* the position of the batch's previous known sensor */
    int64_t x;
    int at = -1;
    if (!lit(c, '{')) return 0;
    for (;;) {
        at = key(c, C.env, N_ENV, at + 1);
        if (at < 0 || (seen >> at) & 1) return 0;
        seen |= 1u << at;
        switch (at) {
            case E_V:
                if (!integer(c, &x) || x != C.version) return 0;
                break;
            case E_GW:
                if (!str(c, gw, gw_n)) return 0;
                break;
            case E_SEQ:
                if (!integer(c, seq) || *seq < 0) return 0;
                break;
            case E_SENT:
                if (!integer(c, &x)) return 0;
                break;
            case E_OFFSET:
                if (!is_null(c) && !integer(c, &x)) return 0;
                break;
            default: /* E_READINGS */
                if (!lit(c, '[')) return 0;
                for (;;) {
                    if (count >= C.max_readings || start + count >= o->capacity) return 0;
                    if (!reading(c, t, o, start + count, &last)) return 0;
                    count++;
                    int more = next(c, ']');
                    if (more < 0) return 0;
                    if (!more) break;
                }
        }
        int more = next(c, '}');
        if (more < 0) return 0;
        if (!more) break;
    }
    if ((seen | (1u << E_OFFSET)) != (1u << N_ENV) - 1) return 0;
    ws(c);
    return c->p == c->end ? count : 0;
}

/* Gets a writable C-contiguous buffer of `itemsize` bytes per item into v. */
static int writable(PyObject *obj, Py_buffer *v, Py_ssize_t itemsize, const char *what) {
    if (PyObject_GetBuffer(obj, v, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (v->itemsize != itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: items of %zd bytes needed", what, itemsize);
        PyBuffer_Release(v);
        return -1;
    }
    return 0;
}

static PyObject *decode(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (!C.ready) {
        PyErr_SetString(PyExc_RuntimeError, "configure() first");
        return NULL;
    }
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "decode(payload, table, sensor, kind, ts, seq, values, start)");
        return NULL;
    }
    if (!PyBytes_Check(args[0]) || !PyObject_TypeCheck(args[1], &TableType)) {
        PyErr_SetString(PyExc_TypeError, "payload must be bytes and table a Table");
        return NULL;
    }
    Table *t = (Table *)args[1];
    if (t->slots == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Table not built");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[7]);
    if (start == -1 && PyErr_Occurred()) return NULL;
    Py_buffer b[5];
    static const Py_ssize_t size[5] = {4, 1, 8, 8, 8};
    static const char *what[5] = {"sensor", "kind", "ts", "seq", "values"};
    int got = 0;
    for (; got < 5; got++)
        if (writable(args[2 + got], &b[got], size[got], what[got]) < 0) break;
    PyObject *result = NULL;
    if (got == 5) {
        Py_ssize_t cap = b[0].len / 4;
        for (int i = 1; i < 4; i++)
            if (b[i].len / size[i] < cap) cap = b[i].len / size[i];
        if (b[4].len / 8 / C.width < cap) cap = b[4].len / 8 / C.width;
        if (start < 0 || start > cap) {
            PyErr_SetString(PyExc_ValueError, "start outside the buffers");
        } else {
            Out o = {b[0].buf, b[1].buf, b[2].buf, b[3].buf, b[4].buf, cap};
            const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(args[0]);
            Py_ssize_t len = PyBytes_GET_SIZE(args[0]);
            Cur c = {p, p + len};
            const unsigned char *gw = NULL;
            Py_ssize_t gw_n = 0, n = 0;
            int64_t seq = 0;
            if (len <= C.max_payload) {
                /* Only C data is touched: the payload, the table and the buffers are held by
                 * this call, and configure() runs once, before any decode. */
                Py_BEGIN_ALLOW_THREADS
                n = batch(&c, t, &o, start, &gw, &gw_n, &seq);
                Py_END_ALLOW_THREADS
            }
            if (n > 0)
                result = Py_BuildValue("(s#Ln)", (const char *)gw, gw_n, (long long)seq, n);
            else
                result = Py_NewRef(Py_None);
        }
    }
    for (int i = 0; i < got; i++) PyBuffer_Release(&b[i]);
    return result;
}

/* One name from Python: ASCII str of 1..MAX_NAME-1 bytes. */
static int name(PyObject *obj, Name *out) {
    Py_ssize_t n;
    const char *s = PyUnicode_Check(obj) ? PyUnicode_AsUTF8AndSize(obj, &n) : NULL;
    if (s == NULL) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "names must be str");
        return -1;
    }
    int plain = 1;
    for (Py_ssize_t i = 0; i < n; i++) plain &= STR_CLASS[(unsigned char)s[i]] == 0;
    if (n < 1 || n >= MAX_NAME || !plain) {
        PyErr_SetString(PyExc_ValueError, "a name of 1..63 printable ASCII bytes, no \" or \\");
        return -1;
    }
    memcpy(out->s, s, (size_t)n);
    out->n = n;
    return 0;
}

static int names(PyObject *seq, Name *out, int most, const char *what) {
    PyObject *f = PySequence_Fast(seq, what);
    if (f == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(f);
    int ok = n >= 1 && n <= most;
    if (!ok) PyErr_Format(PyExc_ValueError, "%s: 1..%d names needed", what, most);
    for (Py_ssize_t i = 0; ok && i < n; i++)
        ok = name(PySequence_Fast_GET_ITEM(f, i), &out[i]) == 0;
    Py_DECREF(f);
    return ok ? (int)n : -1;
}

static PyObject *configure(PyObject *module, PyObject *args, PyObject *kwds) {
    (void)module;
    PyObject *env, *read, *kinds, *clocks;
    long long max_readings, max_payload, version, lo, hi;
    Py_ssize_t width;
    static char *kw[] = {"envelope_keys", "reading_keys", "kinds", "clocks", "width",
                         "max_readings", "max_payload", "version", "lo", "hi", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "$OOOOnLLLLL", kw, &env, &read, &kinds, &clocks,
                                     &width, &max_readings, &max_payload, &version, &lo, &hi))
        return NULL;
    if (C.ready) {
        PyErr_SetString(PyExc_RuntimeError, "configure() runs once");
        return NULL;
    }
    if (names(env, C.env, N_ENV, "envelope_keys") != N_ENV ||
        names(read, C.read, N_READ, "reading_keys") != N_READ) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "6 envelope and reading keys");
        return NULL;
    }
    if ((C.n_clocks = names(clocks, C.clocks, MAX_CLOCKS, "clocks")) < 0) return NULL;
    if (width < 1 || width > MAX_NAMES || max_readings < 1 || max_payload < 1 || lo > hi) {
        PyErr_SetString(PyExc_ValueError, "width, limits or bounds out of range");
        return NULL;
    }
    PyObject *f = PySequence_Fast(kinds, "kinds: (name, code, fields) per kind");
    if (f == NULL) return NULL;
    Py_ssize_t nk = PySequence_Fast_GET_SIZE(f);
    int ok = nk >= 1 && nk <= MAX_KINDS;
    C.n_names = 0;
    for (Py_ssize_t i = 0; ok && i < nk; i++) {
        PyObject *kname, *fields;
        int code;
        Name fn[MAX_NAMES];
        ok = PyArg_ParseTuple(PySequence_Fast_GET_ITEM(f, i), "OiO", &kname, &code, &fields) &&
             name(kname, &C.kind[i]) == 0 && code >= 1 && code <= 127;
        int nf = ok ? names(fields, fn, MAX_NAMES, "fields") : -1;
        ok = ok && nf >= 1 && nf <= width;
        C.kind_mask[i] = 0;
        for (int j = 0; ok && j < nf; j++) {
            int slot = find(C.names, C.n_names, (const unsigned char *)fn[j].s, fn[j].n);
            if (slot < 0 && C.n_names < MAX_NAMES) {
                slot = C.n_names++;
                C.names[slot] = fn[j];
            }
            ok = slot >= 0 && !((C.kind_mask[i] >> slot) & 1);
            if (ok) {
                C.field_slot[i][j] = slot;
                C.kind_mask[i] |= 1u << slot;
            }
        }
        if (ok) {
            C.kind_code[i] = (int8_t)code;
            C.n_fields[i] = nf;
        }
    }
    Py_DECREF(f);
    if (!ok) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "kinds out of range");
        return NULL;
    }
    C.n_kinds = (int)nk;
    C.width = width;
    C.max_readings = max_readings;
    C.max_payload = max_payload;
    C.version = version;
    C.lo = lo;
    C.hi = hi;
    C.ready = 1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"configure", (PyCFunction)(void (*)(void))configure, METH_VARARGS | METH_KEYWORDS,
     "Set the contract's names and limits (from Python, once at import)."},
    {"decode", (PyCFunction)(void (*)(void))decode, METH_FASTCALL,
     "decode(payload, table, sensor, kind, ts, seq, values, start) -> (gw, seq, n) or None:\n"
     "the batch's readings written to rows start..start+n-1, or None (not mine)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_jsoncols",
    .m_doc = "Native column decoder of well-formed JSON batches (a filter; docs/adr/0034).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__jsoncols(void) {
    for (int b = 0; b < 256; b++) STR_CLASS[b] = b == '"' ? 1 : (b < 0x20 || b > 0x7e || b == '\\') ? 2 : 0;
    if (PyType_Ready(&TableType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Table", (PyObject *)&TableType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
