/* The native decoder's sensor table: registry id (UTF-8 bytes) -> position, looked up from
 * the payload's bytes without a Python string (included once, by _jsoncols.c; ADR 0034). */
#ifndef PANTAU_JSONCOLS_TABLE_H
#define PANTAU_JSONCOLS_TABLE_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "_jsoncols_scan.h" /* same() */

/* ---- the sensor table: registry id (UTF-8 bytes) -> position, open addressing ---- */

/* 16 bytes, so that a registry of 8 000 sensors fits in 256 KiB (L2): with 32-byte slots
 * the slot load was the decoder's most expensive instruction (a cache miss per reading). */
typedef struct {
    uint32_t tag;      /* the hash's high half */
    int32_t pos;       /* -1: empty slot */
    uint32_t off, len; /* the id's bytes in keys[off:off+len] */
} Slot;

/* Each position's id bytes, in position order: the guess of table_next (len UINT32_MAX: no
 * id has that position). */
typedef struct {
    uint32_t off, len;
} Span;

typedef struct {
    PyObject_HEAD
    Slot *slots;
    size_t mask;
    char *keys;
    Span *by_pos;
    Py_ssize_t n_pos; /* positions 0 .. n_pos - 1 */
} Table;

/* A hash of a sensor id's bytes, 8 at a time (ids are short: one or two words). */
static inline uint64_t id_hash(const unsigned char *p, Py_ssize_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)n, w;
    while (n >= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    if (n > 0) {
        w = 0;
        memcpy(&w, p, (size_t)n);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
    }
    return h ^ (h >> 32);
}

static void Table_dealloc(Table *self) {
    PyMem_Free(self->slots);
    PyMem_Free(self->keys);
    PyMem_Free(self->by_pos);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Table_init(Table *self, PyObject *args, PyObject *kwds) {
    PyObject *d;
    static char *kw[] = {"sensor_pos", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!", kw, &PyDict_Type, &d)) return -1;
    if (self->slots != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "a Table is built once");
        return -1;
    }
    Py_ssize_t n = PyDict_Size(d), total = 0, i = 0;
    long top = -1;
    PyObject *k, *v;
    while (PyDict_Next(d, &i, &k, &v)) {
        Py_ssize_t len;
        if (!PyUnicode_Check(k) || PyUnicode_AsUTF8AndSize(k, &len) == NULL) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "sensor ids must be str");
            return -1;
        }
        long pos = PyLong_AsLong(v);
        if (pos == -1 && PyErr_Occurred()) return -1;
        if (pos < 0 || pos >= INT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "sensor positions must be int32 >= 0");
            return -1;
        }
        if (pos > top) top = pos;
        total += len;
    }
    size_t cap = 8;
    while (cap < (size_t)n * 2 + 1) cap <<= 1;
    Slot *slots = PyMem_Calloc(cap, sizeof(Slot));
    char *keys = PyMem_Malloc(total > 0 ? (size_t)total : 1);
    /* positions are the registry's, 0 .. n - 1; a sparse misuse gets no guesses, not a huge
     * array */
    Py_ssize_t n_pos = top < 2 * n + 1024 ? (Py_ssize_t)top + 1 : 0;
    Span *by_pos = PyMem_Malloc((size_t)n_pos * sizeof(Span) + 1);
    if (slots == NULL || keys == NULL || by_pos == NULL) {
        PyMem_Free(slots);
        PyMem_Free(keys);
        PyMem_Free(by_pos);
        PyErr_NoMemory();
        return -1;
    }
    for (size_t s = 0; s < cap; s++) slots[s].pos = -1;
    for (Py_ssize_t p = 0; p < n_pos; p++) by_pos[p] = (Span){0, UINT32_MAX};
    /* From here the table is whole at every step (empty slots, then more ids): a failure
     * below leaves a table of fewer ids, never one whose probe cannot end. */
    self->slots = slots;
    self->keys = keys;
    self->mask = cap - 1;
    self->by_pos = by_pos;
    self->n_pos = n_pos;
    Py_ssize_t off = 0;
    i = 0;
    while (PyDict_Next(d, &i, &k, &v)) {
        Py_ssize_t len;
        const char *u = PyUnicode_AsUTF8AndSize(k, &len);
        long pos = PyLong_AsLong(v);
        if (pos == -1 && PyErr_Occurred()) return -1;
        if (pos < 0 || pos > INT32_MAX || off + len > total || off + len > UINT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "sensor positions must be int32 >= 0");
            return -1;
        }
        memcpy(self->keys + off, u, (size_t)len);
        uint64_t h = id_hash((const unsigned char *)u, len);
        size_t s = (size_t)h & self->mask;
        while (self->slots[s].pos >= 0) s = (s + 1) & self->mask; /* keys are distinct */
        self->slots[s] = (Slot){(uint32_t)(h >> 32), (int32_t)pos, (uint32_t)off, (uint32_t)len};
        if (pos < self->n_pos) self->by_pos[pos] = (Span){(uint32_t)off, (uint32_t)len};
        off += len;
    }
    return 0;
}

static inline int32_t table_get(const Table *t, const unsigned char *p, Py_ssize_t n) {
    uint64_t h = id_hash(p, n);
    size_t s = (size_t)h & t->mask;
    for (size_t probes = 0; probes <= t->mask; probes++) { /* at most every slot once */
        const Slot *e = &t->slots[s];
        if (e->pos < 0) return -1;
        if (e->tag == (uint32_t)(h >> 32) && e->len == (uint64_t)n && same(t->keys + e->off, p, n))
            return e->pos;
        s = (s + 1) & t->mask;
    }
    return -1;
}

/* As table_get, trying first the position after `*last` (-1: none yet), then remembering the
 * position found. A gateway sends its sensors in the same order every time, and the registry
 * lists a gateway's sensors together, so the guess nearly always holds: its id bytes are read
 * in order, where the hash's slot is a random read into a table larger than L1 (a third of
 * the decode's time was that load). A wrong guess costs one comparison. */
static inline int32_t table_next(const Table *t, const unsigned char *p, Py_ssize_t n, int32_t *last) {
    Py_ssize_t g = (Py_ssize_t)*last + 1;
    if (g < t->n_pos) {
        const Span *e = &t->by_pos[g];
        if (e->len == (uint64_t)n && same(t->keys + e->off, p, n)) return *last = (int32_t)g;
    }
    int32_t pos = table_get(t, p, n);
    if (pos >= 0) *last = pos;
    return pos;
}

static PyObject *Table_get(Table *self, PyObject *arg) {
    if (self->slots == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Table not built");
        return NULL;
    }
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(arg, &n);
    if (u == NULL) return NULL;
    return PyLong_FromLong(table_get(self, (const unsigned char *)u, n));
}

static PyMethodDef Table_methods[] = {
    {"get", (PyCFunction)Table_get, METH_O, "Position of a sensor id, -1 if unknown."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "cloud.ingest.decode._jsoncols.Table",
    .tp_basicsize = sizeof(Table),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Table(sensor_pos): sensor id -> registry position, looked up from raw bytes.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Table_init,
    .tp_dealloc = (destructor)Table_dealloc,
    .tp_methods = Table_methods,
};

#endif
