/*
 * The flow-log scanner's compiled first pass: drop the records no detector can act on before any
 * of their fields becomes a Python object.
 *
 * Most records of a VPC are traffic between our own addresses that is not a probe: the Python
 * scanner (detect.py) reads each of them only to learn that. This pass checks a block of records
 * line by line in C and returns the fields the scanner reads (cut as `bytes.split()` cuts them) of
 * the records that remain, in their order, so the scanner runs its own loop, unchanged, on those
 * alone. A record is dropped only when the Python loop would have done nothing with it:
 *
 *   - both addresses are in the scanner's memo with flags 0 (ours, on no list), or the source is
 *     a plain public address (flags PUBLIC alone), the destination ours, the source port no mining
 *     pool's and the destination port neither SSH nor RDP (an internet client of ours), and
 *   - it is not a probe candidate: its byte count is a plain number above the probe size, or its
 *     ports say it is not a probe (compared as bytes, exactly as detect.py compares them).
 *
 * Anything else is kept, and so is anything this pass cannot judge exactly as Python would (an
 * address the classifier refuses, a byte count Python's int() would have to read). An address the
 * memo does not hold is classified here, by the classifier's own method, in the records' order, as
 * the loop would on first sight. Two kinds of record are handled here rather than kept, their
 * counts added to the scanner's own as its loop would add them, in order, once the block proves
 * regular: ours to a plain public address that only the egress count reads, and a probe candidate
 * that only the probe counts read, of a source the scanner counts already (the ports it probed,
 * the addresses it swept). A block that is not regular (a line with another number of fields, a
 * status that is not one) is not judged at all: None, and the scanner takes its own path for it.
 * Writes to nothing but the memo (through the classifier) and the counts it is given.
 *
 * Fields are found sixteen bytes at a time (SSE2, every x86-64; eight with a word's arithmetic
 * elsewhere): a run with no byte at or below 0x20 holds no separator, so only the separators
 * themselves are visited, not every byte.
 *
 * It also reads a threat list of one address or CIDR per line (`ipv4_ranges`), into the merged
 * spans addresses.py would make of it.
 *
 * Written against the limited C API (one build serves every CPython from 3.11), using nothing from
 * the C library but memcmp, memcpy, memset and qsort, so the object runs on the Lambda runtimes'
 * older glibc.
 */
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define MAX_WIDTH 128     /* fields per record; a layout with more is left to Python */
#define SLOTS 8192        /* the per-call address cache; a power of two */
#define MAX_CACHED 4096   /* half full at most: beyond, addresses are looked up in the memo each time */
#define MAX_DIGITS 18     /* a probe-size limit with more digits than this is left to Python */

enum { SRC, DST, SPORT, DPORT, BYTES, STATUS, IFACE, PROTOCOL, PACKETS, COLUMNS };

/* What bytes.split() separates on: the end of a line, and the other ASCII whitespace. */
enum { REGULAR, SPACE, NEWLINE };
static const unsigned char CLASS[256] = {
    ['\t'] = SPACE, ['\n'] = NEWLINE, ['\v'] = SPACE, ['\f'] = SPACE, ['\r'] = SPACE, [' '] = SPACE,
};

#define UNKNOWN (-1L) /* an address the memo does not hold (flags are never negative) */

/* What the classifier's memo said of an address, kept from one call to the next in a table the
 * caller owns (the classifier's `known`, a bytearray it replaces whenever a value in its memo
 * changes; entries are only ever added to the memo otherwise): most addresses of a block were seen
 * in earlier blocks, and reading them from the memo means a bytes object and a dict lookup each. */
#define KNOWN_LONGEST 42 /* an IPv6 address is 39 characters at most */
typedef struct {
    uint32_t hash; /* the hash's high half (never 0); 0: an empty entry */
    int32_t key;   /* the address's bytes object, at this place in the table's list of them */
    /* The scanner's egress entry of the address and its sets of probed ports and swept addresses,
     * each 1 + its place in the list of links (see `Links`), or 0: not linked yet. */
    int32_t egress;
    int32_t ports;
    int32_t targets;
    uint8_t flags;
    uint8_t len;
    char at[KNOWN_LONGEST];
} Known;
/* addresses.py sizes the table (KNOWN_BYTES) in entries of 64 bytes, and a header of one. */
_Static_assert(sizeof(Known) == 64, "a known entry is 64 bytes");

typedef struct {
    uint64_t used; /* entries filled; the table is at most half full */
    /* The hash's secret, random per table (the classifier writes it): addresses come from packets
     * anyone can send, and ones chosen to collide would make every lookup walk the whole table. */
    uint64_t seed;
    /* The scanner whose links the entries hold (its number, never 0), or 0: none yet. A scanner's
     * egress counts and sets are values of its dicts that it never replaces or removes once made,
     * so an address's are looked up in those dicts once per table, not once per block; the links
     * list holds them (strong references), and the table holds only places in it. */
    uint64_t owner;
    char unused[sizeof(Known) - 3 * sizeof(uint64_t)];
} KnownHeader;
_Static_assert(sizeof(KnownHeader) == sizeof(Known), "the header is one entry");

typedef struct {
    const char *at;
    Py_ssize_t len;
    uint64_t word[2]; /* an address of at most 16 bytes, zero-padded: compared as two words */
    long flags;
    int kept; /* a record from this address was kept in this block: Python will see it, in order */
    /* Its egress count as this pass found it and added to it, applied when the block is done (a
     * block found irregular later is Python's alone, and must find the counts as they were). */
    int touched;
    int fresh;             /* no entry yet: one is made */
    PyObject *entry;       /* else the entry (borrowed from the counts) */
    const char *interface; /* the interface counted */
    Py_ssize_t interface_len;
    long long base;  /* the count before this block */
    long long added; /* what this block's records added */
    /* As a source of probes: the scanner's set of the ports it probed and of the addresses it swept
     * (strong references, or NULL: not looked up yet, or ABSENT: the scanner has none). */
    PyObject *ports;
    PyObject *targets;
    int held; /* in the cache's list of slots holding references */
    /* Sets made here (MADE_PORTS, MADE_TARGETS), put into the scanner's dicts when the block is done,
     * and the interface of the probe that made its ports' set (the source's first). */
    int made;
    int placed;
    const char *first_interface;
    Py_ssize_t first_interface_len;
    /* The address as a bytes object, made once: borrowed from the known table's list, or the slot's own. */
    PyObject *key;
    int own_key;
    Known *known; /* its entry in the table of known addresses, or NULL */
} Slot;


typedef struct {
    uint32_t *index; /* SLOTS: 16 bits of the hash and 1 + the slot's place in `slots`, or 0 */
    const char *end; /* of the block: an address is read sixteen bytes at a time only before it */
    Slot *slots;     /* MAX_CACHED, filled in order */
    Py_ssize_t used;
    PyObject *memo;
    PyObject *classify; /* the classifier's own method, for an address the memo does not hold (or NULL) */
    PyObject *tables[8]; /* the classifier's IPv4 ranges, to classify a dotted quad here (see classify_ipv4) */
    PyObject **tables_in_use; /* `tables`, or NULL: every address is the classifier's */
    Py_ssize_t memo_limit;
    Known *known;       /* the table of addresses known from earlier calls, or NULL */
    KnownHeader *known_header;
    PyObject *known_keys; /* a list, beside the table */
    PyObject *links;      /* the scanner's list of what the table's entries link to, or NULL: no links */
    size_t known_mask;
    uint64_t seed; /* of every hash this call makes: the known table's, or a fixed one without it */
    Slot *touched[MAX_CACHED];
    Py_ssize_t touches;
    Slot *holding[MAX_CACHED];
    Py_ssize_t holds;
} Cache;

#define PLACE_BITS 16 /* MAX_CACHED < 1 << PLACE_BITS */
#define PLACE_MASK ((1U << PLACE_BITS) - 1)

/* The address's first sixteen bytes as two zero-padded words, read in two loads (the bytes after
 * it, up to sixteen, belong to the block): 1, or 0 when it is longer or ends the block. */
static inline int short_words(const Cache *cache, const char *at, Py_ssize_t len, uint64_t *word)
{
    if (len > 16 || cache->end - at < 16) {
        return 0;
    }
    memcpy(word, at, 16);
    if (len <= 8) {
        word[0] &= len == 8 ? ~0ULL : (1ULL << (8 * len)) - 1;
        word[1] = 0;
    } else if (len < 16) {
        word[1] &= (1ULL << (8 * (len - 8))) - 1;
    }
    return 1;
}

/* The hash of a short address's words under the secret `seed`; never 0. */
static inline uint64_t hash_words(const uint64_t *word, Py_ssize_t len, uint64_t seed)
{
    uint64_t hash = (word[0] ^ seed) * 0xFF51AFD7ED558CCDULL;
    hash ^= hash >> 32;
    hash = (hash ^ word[1] ^ (uint64_t)len) * 0xC4CEB9FE1A85EC53ULL;
    hash ^= hash >> 29;
    hash *= 0x9E3779B97F4A7C15ULL;
    hash ^= hash >> 32;
    return hash ? hash : 1;
}

/* A hash of an address's bytes, eight at a time (addresses are 7 to 39 bytes): only the slot it
 * picks depends on it, never an answer (slots compare the bytes). Never 0. */
static uint64_t hash_of(const char *at, Py_ssize_t len, uint64_t seed)
{
    uint64_t hash = 0x9E3779B97F4A7C15ULL ^ seed ^ (uint64_t)len;
    Py_ssize_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t word;
        memcpy(&word, at + i, 8);
        hash = (hash ^ word) * 0xFF51AFD7ED558CCDULL;
        hash ^= hash >> 32;
    }
    uint64_t tail = 0;
    memcpy(&tail, at + i, (size_t)(len - i));
    hash = (hash ^ tail) * 0xC4CEB9FE1A85EC53ULL;
    hash ^= hash >> 29;
    return hash ? hash : 1;
}

/* Equal bytes, compared a word at a time (the library's memcmp is a call per address). */
static inline int same(const char *a, const char *b, Py_ssize_t len)
{
    Py_ssize_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t x;
        uint64_t y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        if (x != y) {
            return 0;
        }
    }
    for (; i < len; i++) {
        if (a[i] != b[i]) {
            return 0;
        }
    }
    return 1;
}

static inline uint32_t known_tag(uint64_t hash)
{
    uint32_t tag = (uint32_t)(hash >> 32);
    return tag ? tag : 1;
}

static Known *known_entry(const Cache *cache, uint64_t hash, const char *at, Py_ssize_t len, int *found)
{
    size_t place = (size_t)(hash >> 20) & cache->known_mask;
    uint32_t tag = known_tag(hash);
    for (;;) {
        Known *entry = &cache->known[place];
        if (entry->hash == 0) {
            *found = 0;
            return entry;
        }
        if (entry->hash == tag && entry->len == len && same(entry->at, at, len)) {
            *found = 1;
            return entry;
        }
        place = (place + 1) & cache->known_mask;
    }
}

static int dotted_quad(const char *at, Py_ssize_t len, uint32_t *value);

/* Ranges as addresses.py keeps them (sorted starts, and their ends, as lists of ints): whether
 * `value` is in one, found as `bisect_right` finds it. 0, or -1 with an error set. */
static int in_ranges(PyObject *starts, PyObject *ends, uint32_t value, int *inside)
{
    Py_ssize_t lo = 0;
    Py_ssize_t hi = PyList_Size(starts);
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        unsigned long long start = PyLong_AsUnsignedLongLong(PyList_GetItem(starts, mid));
        if (start == (unsigned long long)-1 && PyErr_Occurred()) {
            return -1;
        }
        if (value < start) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    *inside = 0;
    if (lo > 0) {
        PyObject *end = PyList_GetItem(ends, lo - 1);
        unsigned long long last = end == NULL ? (unsigned long long)-1 : PyLong_AsUnsignedLongLong(end);
        if (last == (unsigned long long)-1 && PyErr_Occurred()) {
            return -1;
        }
        *inside = value <= last;
    }
    return 0;
}

/* Classifier.classify for a dotted quad, in C: its flags (a new int in `found`), into the memo as
 * the classifier puts them; 1, or 0 when the address is anything else (the classifier's), or -1
 * with an error set. The tables: private, internal, threat-listed and forbidden IPv4 ranges (the
 * last two None when the classifier has none forbidden), and the memo's limit. */
enum { PUBLIC_FLAG = 1, THREAT_FLAG = 2, FORBIDDEN_FLAG = 16 };
static int classify_ipv4(Cache *cache, PyObject *key, const char *at, Py_ssize_t len, PyObject **found)
{
    uint32_t value;
    if (!dotted_quad(at, len, &value)) {
        return 0;
    }
    PyObject *const *t = cache->tables_in_use;
    int inside;
    long flags = PUBLIC_FLAG;
    if (in_ranges(t[0], t[1], value, &inside) < 0) {
        return -1;
    }
    if (!inside && in_ranges(t[2], t[3], value, &inside) < 0) {
        return -1;
    }
    if (inside) {
        flags = 0;
    }
    if (in_ranges(t[4], t[5], value, &inside) < 0) {
        return -1;
    }
    flags |= inside ? THREAT_FLAG : 0;
    if (t[6] != NULL) {
        if (in_ranges(t[6], t[7], value, &inside) < 0) {
            return -1;
        }
        flags |= inside ? FORBIDDEN_FLAG : 0;
    }
    *found = PyLong_FromLong(flags);
    if (*found == NULL) {
        return -1;
    }
    if (PyDict_Size(cache->memo) < cache->memo_limit && PyDict_SetItem(cache->memo, key, *found) < 0) {
        Py_CLEAR(*found);
        return -1;
    }
    return 1;
}

/* The address's flags from the memo (or the classifier), or UNKNOWN, and its entry in the known
 * table (NULL when it has none) with its bytes object when this call made it (borrowed from the
 * table's list), else NULL (`key_of` reads it from the list when it is needed): 0, or -1 with an
 * error set. */
static int memo_flags(Cache *cache, uint64_t hash, const char *at, Py_ssize_t len, long *flags, PyObject **held,
                      Known **known)
{
    Known *entry = NULL;
    *held = NULL;
    *known = NULL;
    if (cache->known != NULL && len <= KNOWN_LONGEST) {
        int found;
        entry = known_entry(cache, hash, at, len, &found);
        if (found) {
            *flags = entry->flags;
            *known = entry;
            return 0;
        }
    }
    PyObject *key = PyBytes_FromStringAndSize(at, len);
    if (key == NULL) {
        return -1;
    }
    PyObject *found = PyDict_GetItemWithError(cache->memo, key); /* borrowed */
    long value = UNKNOWN;
    int classified;
    if (found == NULL && PyErr_Occurred()) {
        Py_DECREF(key);
        return -1;
    }
    if (found != NULL) {
        Py_INCREF(found);
    } else if (cache->tables_in_use != NULL && (classified = classify_ipv4(cache, key, at, len, &found)) != 0) {
        if (classified < 0) {
            Py_DECREF(key);
            return -1;
        }
    } else if (cache->classify != NULL) {
        /* What the scanner's loop does on first sight, here in the records' order, as its loop would
         * (the classifier memoises it): the same flags, so the record is judged here too. */
        found = PyObject_CallFunctionObjArgs(cache->classify, key, NULL);
        if (found == NULL) {
            /* ValueError (a NUL in the address, say) is the loop's to count as a malformed record:
             * the address stays unknown and its records are kept, so Python meets the same error. */
            if (!PyErr_ExceptionMatches(PyExc_ValueError)) {
                Py_DECREF(key);
                return -1;
            }
            PyErr_Clear();
        }
    }
    if (found != NULL) {
        value = PyLong_AsLong(found);
        Py_DECREF(found);
        if (value == -1 && PyErr_Occurred()) {
            Py_DECREF(key);
            return -1;
        }
        if (value < 0) {
            value = UNKNOWN;
        }
    }
    Py_ssize_t place = entry != NULL ? PyList_Size(cache->known_keys) : -1;
    if (entry != NULL && value != UNKNOWN && value <= UINT8_MAX && cache->known_header->used * 2 < cache->known_mask
        && place >= 0 && place < INT32_MAX) {
        if (PyList_Append(cache->known_keys, key) < 0) {
            Py_DECREF(key);
            return -1;
        }
        entry->hash = known_tag(hash);
        entry->flags = (uint8_t)value;
        entry->key = (int32_t)place;
        entry->egress = entry->ports = entry->targets = 0;
        entry->len = (uint8_t)len;
        memcpy(entry->at, at, (size_t)len);
        cache->known_header->used++;
        *held = key; /* the list holds it now */
        *known = entry;
    }
    Py_DECREF(key);
    *flags = value;
    return 0;
}

static void hold(Cache *cache, Slot *slot)
{
    if (!slot->held) {
        slot->held = 1;
        cache->holding[cache->holds++] = slot;
    }
}

/* The slot's address as a bytes object (borrowed), made once per call at most: NULL with an error set. */
static PyObject *key_of(Cache *cache, Slot *slot)
{
    if (slot->key == NULL && slot->known != NULL && slot->known->key < PyList_Size(cache->known_keys)) {
        PyObject *listed = PyList_GetItem(cache->known_keys, slot->known->key); /* borrowed: the list holds it */
        if (listed != NULL && PyBytes_Check(listed)) {
            slot->key = listed;
        }
    }
    if (slot->key == NULL) {
        slot->key = PyBytes_FromStringAndSize(slot->at, slot->len);
        if (slot->key == NULL) {
            return NULL;
        }
        slot->own_key = 1;
        hold(cache, slot);
    }
    return slot->key;
}

/* The slot's link of the kind at `offset` in its known entry (Known's egress, ports or targets), or
 * NULL: the address has no entry, or the links are not this scanner's. */
static inline int32_t *link_of(const Cache *cache, const Slot *slot, size_t offset)
{
    return cache->links != NULL && slot->known != NULL ? (int32_t *)(void *)((char *)slot->known + offset) : NULL;
}

/* What `link` leads to (borrowed), or NULL: not linked. */
static PyObject *linked(const Cache *cache, const int32_t *link)
{
    if (link == NULL || *link <= 0 || *link > PyList_Size(cache->links)) {
        return NULL;
    }
    return PyList_GetItem(cache->links, *link - 1);
}

/* Link to `value` (a value of the scanner's dicts, never replaced): 0, or -1 with an error set. */
static int link_to(const Cache *cache, int32_t *link, PyObject *value)
{
    Py_ssize_t place = link == NULL ? -1 : PyList_Size(cache->links);
    if (place < 0 || place >= INT32_MAX - 1) { /* not linked: looked up again next block */
        return 0;
    }
    if (PyList_Append(cache->links, value) < 0) {
        return -1;
    }
    *link = (int32_t)place + 1;
    return 0;
}

/* The address's flags, or UNKNOWN, and its slot in this call's cache (NULL when the cache is
 * full): 0, or -1 with an error set. */
static int flags_of(Cache *cache, const char *at, Py_ssize_t len, long *flags, Slot **cached)
{
    uint64_t word[2];
    int words = short_words(cache, at, len, word);
    uint64_t hash = words ? hash_words(word, len, cache->seed) : hash_of(at, len, cache->seed);
    uint32_t tag = (uint32_t)(hash >> 48) << PLACE_BITS;
    size_t index = (size_t)hash & (SLOTS - 1);
    for (;; index = (index + 1) & (SLOTS - 1)) {
        uint32_t entry = cache->index[index];
        if (entry == 0) {
            break;
        }
        if ((entry & ~PLACE_MASK) == tag) {
            Slot *slot = &cache->slots[(entry & PLACE_MASK) - 1];
            if (slot->len == len
                && (words ? slot->word[0] == word[0] && slot->word[1] == word[1] : same(slot->at, at, len))) {
                *flags = slot->flags;
                *cached = slot;
                return 0;
            }
        }
    }
    long value;
    PyObject *key;
    Known *known;
    if (memo_flags(cache, hash, at, len, &value, &key, &known) < 0) {
        return -1;
    }
    *cached = NULL;
    if (cache->used < MAX_CACHED) { /* the index is at most half full: `index` is an empty place */
        Slot *slot = &cache->slots[cache->used];
        memset(slot, 0, sizeof(Slot));
        slot->at = at;
        slot->len = len;
        if (words) {
            slot->word[0] = word[0];
            slot->word[1] = word[1];
        }
        slot->flags = value;
        slot->key = key;
        slot->known = known;
        cache->used++;
        cache->index[index] = tag | (uint32_t)cache->used;
        *cached = slot;
    }
    *flags = value;
    return 0;
}

#define MAX_PORTS 64 /* mining-pool and admin ports; more are left to Python */

typedef struct {
    Py_ssize_t count;
    const char *at[MAX_PORTS];
    Py_ssize_t len[MAX_PORTS];
} Ports;

static int one_of(const Ports *ports, const char *at, Py_ssize_t len)
{
    for (Py_ssize_t i = 0; i < ports->count; i++) {
        if (ports->len[i] == len && memcmp(ports->at[i], at, (size_t)len) == 0) {
            return 1;
        }
    }
    return 0;
}

/* 0, or 1 when there are too many, or -1 with an error set (an item is not bytes). */
static int read_ports(PyObject *tuple, Ports *ports)
{
    Py_ssize_t count = PyTuple_Size(tuple);
    if (count < 0) {
        return -1;
    }
    if (count > MAX_PORTS) {
        return 1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        char *at;
        if (PyBytes_AsStringAndSize(PyTuple_GetItem(tuple, i), &at, &ports->len[i]) < 0) {
            return -1;
        }
        ports->at[i] = at;
    }
    ports->count = count;
    return 0;
}

typedef struct {
    Py_ssize_t probe_digits; /* 0: port scans are off, nothing is a probe */
    long long max_bytes;
    const char *max_port;
    Py_ssize_t port_digits;
} Probe;

static int all_digits(const char *at, Py_ssize_t len)
{
    for (Py_ssize_t i = 0; i < len; i++) {
        if (at[i] < '0' || at[i] > '9') {
            return 0;
        }
    }
    return 1;
}

/* The value of digits already checked (all_digits, at most MAX_DIGITS of them: no overflow). */
static long long digits_value(const char *at, Py_ssize_t len)
{
    long long value = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        value = value * 10 + (at[i] - '0');
    }
    return value;
}

static int bytes_above(const char *a, Py_ssize_t alen, const char *b, Py_ssize_t blen)
{
    /* a > b as Python compares bytes. */
    Py_ssize_t common = alen < blen ? alen : blen;
    int order = memcmp(a, b, (size_t)common);
    return order > 0 || (order == 0 && alen > blen);
}

/* 1 when detect.py's loop would treat the record as a probe, or would have to read its byte count
 * with int() (a number or not: either way Python decides); 0 when it would do nothing. */
static int probe_or_unsure(const Probe *probe, const char *const *at, const Py_ssize_t *len)
{
    Py_ssize_t size = len[BYTES];
    if (size > probe->probe_digits) {
        return 0;
    }
    if (size == probe->probe_digits) {
        if (!all_digits(at[BYTES], size)) {
            return 1;
        }
        if (digits_value(at[BYTES], size) > probe->max_bytes) {
            return 0;
        }
    }
    /* Small enough: a probe when its destination port is at most the highest probed port and its
     * source port is higher (not a reply), as detect.py compares them: as bytes, by length first. */
    Py_ssize_t dsize = len[DPORT];
    int low = dsize < probe->port_digits
              || (dsize == probe->port_digits && !bytes_above(at[DPORT], dsize, probe->max_port, dsize));
    int from_higher = len[SPORT] > dsize || (len[SPORT] == dsize && bytes_above(at[SPORT], dsize, at[DPORT], dsize));
    return low && from_higher;
}

static int is_status(const char *at, Py_ssize_t len)
{
    return (len == 2 && memcmp(at, "OK", 2) == 0) || (len == 6 && memcmp(at, "NODATA", 6) == 0)
           || (len == 8 && memcmp(at, "SKIPDATA", 8) == 0);
}

/* Append the wanted fields of the record to `out`: 0, or -1 with an error set. */
static int keep_fields(PyObject *out, const char *const *starts, const Py_ssize_t *lens, const Py_ssize_t *wanted,
                       Py_ssize_t count)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *field = PyBytes_FromStringAndSize(starts[wanted[i]], lens[wanted[i]]);
        if (field == NULL) {
            return -1;
        }
        int failed = PyList_Append(out, field);
        Py_DECREF(field);
        if (failed) {
            return -1;
        }
    }
    return 0;
}

/* A probe of a source the scanner already counts: the port to add to its set, and the address to
 * add to its sweep (when `dst` is not NULL; `target` is its slot, or NULL when the cache is full). */
typedef struct {
    Slot *source;
    const char *dport;
    Py_ssize_t dport_len;
    const char *dst;
    Py_ssize_t dst_len;
    Slot *target;
} Pending;

typedef struct {
    const char *buffer;
    Py_ssize_t width;
    const Py_ssize_t *column;
    const Py_ssize_t *wanted;
    Py_ssize_t count;
    const Probe *probe;
    long public;         /* the memo's flags of a plain public address */
    const Ports *mining; /* ports of mining pools: theirs, when they are the source */
    const Ports *admin;  /* SSH and RDP: ours, when the source is public */
    Cache *cache;
    PyObject *egress;      /* detect.py's egress counts (address -> [interface, bytes]), or NULL: off */
    long long egress_limit;
    PyObject *ports;       /* detect.py's probed ports per source (source -> set), or NULL: port scans off */
    PyObject *sweeps;      /* its swept addresses per source (source -> set), or NULL: sweeps off */
    Py_ssize_t sweep_cap;  /* addresses counted per sweeping source */
    /* A source's first probe is counted here too (its set made), while the block cannot bring the
     * scanner to the most sources it counts: the interface of each one's first probe is appended to
     * `firsts` (in the order the sets go into `ports`; NULL: first probes are Python's), and
     * `probers` is how many it counted before. */
    PyObject *firsts;
    Py_ssize_t probers;
    Py_ssize_t max_probers;
    long long probe_bytes; /* a bare TCP probe's most bytes, and its most packets */
    long long probe_packets;
    Pending *pending; /* the probes counted here, applied in order when the block is done */
    Py_ssize_t pendings;
    Py_ssize_t pending_room;
    PyObject *out;
    Py_ssize_t records;
    Py_ssize_t last;   /* the previous separator (-1 before the first) */
    Py_ssize_t fields; /* of the current line so far */
    const char *starts[MAX_WIDTH];
    Py_ssize_t lens[MAX_WIDTH];
} Pass;

enum { GO_ON, IRREGULAR, FAILED = -1 };

enum { UNSURE, COUNTED };

/* A record of ours to a plain public address that no detector but the egress count reads: count
 * its bytes exactly as detect.py's loop would (the first interface that logged the source is the
 * one counted; "-" is no bytes), COUNTED; or UNSURE, and the record is kept for Python: a byte
 * count int() would have to read, an entry of another shape, or a total that reaches the limit
 * (Python reports that flow). The counts change only in `apply_egress`. -1 with an error set. */
static int count_egress(Pass *s, Slot *slot, const char *const *at, const Py_ssize_t *len)
{
    long long value = 0;
    if (!(len[BYTES] == 1 && at[BYTES][0] == '-')) {
        if (len[BYTES] < 1 || len[BYTES] > MAX_DIGITS || !all_digits(at[BYTES], len[BYTES])) {
            return UNSURE;
        }
        value = digits_value(at[BYTES], len[BYTES]);
    }
    if (!slot->touched) {
        int32_t *link = link_of(s->cache, slot, offsetof(Known, egress));
        PyObject *sent = linked(s->cache, link); /* borrowed */
        if (sent == NULL) {
            PyObject *key = key_of(s->cache, slot);
            if (key == NULL) {
                return -1;
            }
            sent = PyDict_GetItemWithError(s->egress, key); /* borrowed */
            if (sent == NULL && PyErr_Occurred()) {
                return -1;
            }
            if (sent != NULL && link_to(s->cache, link, sent) < 0) {
                return -1;
            }
        }
        slot->fresh = sent == NULL;
        slot->entry = sent;
        slot->base = 0;
        slot->added = 0;
        if (sent == NULL) {
            slot->interface = at[IFACE];
            slot->interface_len = len[IFACE];
        } else {
            PyObject *counted = PyList_Check(sent) && PyList_Size(sent) == 2 ? PyList_GetItem(sent, 0) : NULL;
            PyObject *total = counted != NULL ? PyList_GetItem(sent, 1) : NULL;
            if (counted == NULL || total == NULL || !PyBytes_Check(counted) || !PyLong_Check(total)) {
                PyErr_Clear();
                return UNSURE;
            }
            char *interface;
            if (PyBytes_AsStringAndSize(counted, &interface, &slot->interface_len) < 0) {
                return -1;
            }
            slot->interface = interface;
            int overflow = 0;
            slot->base = PyLong_AsLongLongAndOverflow(total, &overflow);
            if (overflow || (slot->base == -1 && PyErr_Occurred())) {
                PyErr_Clear();
                return UNSURE;
            }
        }
        slot->touched = 1;
        s->cache->touched[s->cache->touches++] = slot;
        if (slot->fresh) {
            slot->added = value; /* Python makes the entry with this record's bytes, and checks no limit */
            return COUNTED;
        }
    }
    if (slot->interface_len != len[IFACE] || memcmp(slot->interface, at[IFACE], (size_t)len[IFACE]) != 0) {
        return COUNTED; /* logged by another interface first: Python counts nothing of it either */
    }
    if (slot->base > LLONG_MAX - slot->added || slot->base + slot->added > LLONG_MAX - value
        || slot->base + slot->added + value >= s->egress_limit) {
        return UNSURE;
    }
    slot->added += value;
    return COUNTED;
}

/* The block was regular: its counts, into the scanner's. 0, or -1 with an error set. */
static int apply_egress(Pass *s)
{
    for (Py_ssize_t i = 0; i < s->cache->touches; i++) {
        Slot *slot = s->cache->touched[i];
        if (slot->fresh) {
            PyObject *key = key_of(s->cache, slot);
            PyObject *entry = key == NULL ? NULL : Py_BuildValue("[y#L]", slot->interface, slot->interface_len, slot->added);
            int failed = entry == NULL || PyDict_SetItem(s->egress, key, entry) < 0
                         || link_to(s->cache, link_of(s->cache, slot, offsetof(Known, egress)), entry) < 0;
            Py_XDECREF(entry);
            if (failed) {
                return -1;
            }
        } else if (slot->added) {
            PyObject *now = PyLong_FromLongLong(slot->base + slot->added);
            if (now == NULL || PyList_SetItem(slot->entry, 1, now) < 0) {
                return -1;
            }
        }
    }
    return 0;
}

static char absent_mark;
#define ABSENT ((PyObject *)&absent_mark) /* looked up: the scanner holds no set for this source */

/* The scanner's set for the source in `sets` (looked up once per block, held), ABSENT, or NULL
 * with an error set. */
static PyObject *set_of(Cache *cache, Slot *slot, PyObject **cached, PyObject *sets, size_t offset)
{
    if (*cached != NULL) {
        return *cached;
    }
    int32_t *link = link_of(cache, slot, offset);
    PyObject *found = linked(cache, link); /* borrowed */
    if (found == NULL) {
        PyObject *key = key_of(cache, slot);
        if (key == NULL) {
            return NULL;
        }
        found = PyDict_GetItemWithError(sets, key); /* borrowed */
        if (found == NULL && PyErr_Occurred()) {
            return NULL;
        }
        if (found != NULL && PySet_Check(found) && link_to(cache, link, found) < 0) {
            return NULL;
        }
    }
    if (found == NULL || !PySet_Check(found)) {
        *cached = ABSENT;
        return ABSENT;
    }
    Py_INCREF(found);
    *cached = found;
    hold(cache, slot);
    return found;
}

/* A decimal as str(n) writes it (digits, no leading zero), at most `most`: its value, or -1. */
static long long small_decimal(const char *at, Py_ssize_t len, long long most)
{
    if (len < 1 || len > MAX_DIGITS || !all_digits(at, len) || (len > 1 && at[0] == '0')) {
        return -1;
    }
    long long value = digits_value(at, len);
    return value <= most ? value : -1;
}

enum { ABSORBED = 2 };
enum { MADE_PORTS = 1, MADE_TARGETS = 2 };

/* A new set for the source (held by its slot, put into the scanner's dict in `apply_probes`), as
 * detect.py's loop makes one on a source's first probe, or on its first sweep: the set, ABSENT when
 * it is Python's to make, or NULL with an error set. */
static PyObject *new_set(Pass *s, Slot *source, PyObject **cached, int kind, const char *const *at,
                         const Py_ssize_t *len)
{
    if (kind == MADE_PORTS) {
        /* In the records' order Python would have made at most `records - 1` sets before this one. */
        if (s->firsts == NULL || s->column[IFACE] < 0 || s->probers + s->records >= s->max_probers) {
            return ABSENT;
        }
        source->first_interface = at[IFACE];
        source->first_interface_len = len[IFACE];
    }
    PyObject *made = PySet_New(NULL);
    if (made == NULL) {
        return NULL;
    }
    *cached = made; /* the slot's reference, released with the others */
    source->made |= kind;
    hold(s->cache, source);
    return made;
}

/* Interfaces as bytes objects, one per interface, kept between calls in a small table (an entry
 * another interface needs is given to it: the table holds only its own references, so an object a
 * set or list holds is never freed under it): a delivery's first probes come from tens of
 * thousands of sources through a few hundred interfaces. */
#define INTERFACES 512
#define INTERFACE_WAYS 4
/* Longer than any interface or attachment id (eni-, tgw-attach-: 21 and 29 characters): a hostile
 * record's long field gets an object of its own, never held by the table. */
#define INTERFACE_LONGEST 64
static PyObject *interfaces_made[INTERFACES];

/* A new reference to the interface's bytes object, or NULL with an error set. */
static PyObject *interface_of(const char *at, Py_ssize_t len)
{
    if (len > INTERFACE_LONGEST) {
        return PyBytes_FromStringAndSize(at, len);
    }
    size_t first = (size_t)(hash_of(at, len, 0) >> 7) & (INTERFACES - 1);
    size_t place = first;
    size_t free_place = first; /* every way taken: the first gives its place */
    for (int way = 0; way < INTERFACE_WAYS; way++, place = (place + 1) & (INTERFACES - 1)) {
        PyObject *made = interfaces_made[place];
        if (made == NULL) {
            free_place = place;
            break;
        }
        char *held;
        Py_ssize_t held_len;
        if (PyBytes_AsStringAndSize(made, &held, &held_len) < 0) {
            return NULL;
        }
        if (held_len == len && memcmp(held, at, (size_t)len) == 0) {
            Py_INCREF(made);
            return made;
        }
    }
    PyObject *made = PyBytes_FromStringAndSize(at, len);
    if (made == NULL) {
        return NULL;
    }
    PyObject *given_up = interfaces_made[free_place];
    interfaces_made[free_place] = made;
    Py_XDECREF(given_up);
    Py_INCREF(made);
    return made;
}

/* Put a set made here into the scanner's dict, and link it: 0, or -1 with an error set. */
static int place(Pass *s, Slot *source, int kind)
{
    if (!(source->made & kind) || (source->placed & kind)) {
        return 0;
    }
    source->placed |= kind;
    PyObject *key = key_of(s->cache, source);
    if (key == NULL) {
        return -1;
    }
    PyObject *made = kind == MADE_PORTS ? source->ports : source->targets;
    PyObject *sets = kind == MADE_PORTS ? s->ports : s->sweeps;
    size_t offset = kind == MADE_PORTS ? offsetof(Known, ports) : offsetof(Known, targets);
    if (PyDict_SetItem(sets, key, made) < 0 || link_to(s->cache, link_of(s->cache, source, offset), made) < 0) {
        return -1;
    }
    if (kind != MADE_PORTS) {
        return 0;
    }
    PyObject *interface = interface_of(source->first_interface, source->first_interface_len);
    int failed = interface == NULL || PyList_Append(s->firsts, interface) < 0;
    Py_XDECREF(interface);
    return failed ? -1 : 0;
}

/* A record that only the probe counts read (one the loop would otherwise ignore): decide it as
 * detect.py's loop does, ABSORBED (what it adds is pending, a source's first probe or first sweep
 * making its set), or UNSURE and it is kept: a byte count int() would have to read, a first probe
 * the block could bring near MAX_PROBING_SOURCES (Python's, in order). -1 with an error set. */
static int absorb_probe(Pass *s, Slot *source, Slot *destination, const char *const *at, const Py_ssize_t *len,
                        long fs, long fd)
{
    if (len[BYTES] > MAX_DIGITS || !all_digits(at[BYTES], len[BYTES])) {
        return UNSURE;
    }
    if (len[DPORT] < 1 || !all_digits(at[DPORT], len[DPORT])) {
        return ABSORBED; /* bytes.isdigit() is false: never counted, and nothing else reads it */
    }
    PyObject *ports = set_of(s->cache, source, &source->ports, s->ports, offsetof(Known, ports));
    if (ports == ABSENT) {
        ports = new_set(s, source, &source->ports, MADE_PORTS, at, len);
    }
    if (ports == NULL) {
        return -1;
    }
    if (ports == ABSENT) {
        return UNSURE;
    }
    const char *dst = NULL;
    if (s->sweeps != NULL && fs == 0 && fd == 0 && len[PROTOCOL] == 1 && at[PROTOCOL][0] == '6'
        && small_decimal(at[PACKETS], len[PACKETS], s->probe_packets) >= 1) {
        if (digits_value(at[BYTES], len[BYTES]) <= s->probe_bytes) {
            PyObject *targets = set_of(s->cache, source, &source->targets, s->sweeps, offsetof(Known, targets));
            if (targets == ABSENT) {
                targets = new_set(s, source, &source->targets, MADE_TARGETS, at, len);
            }
            if (targets == NULL) {
                return -1;
            }
            if (targets == ABSENT) {
                return UNSURE;
            }
            dst = at[DST];
        }
    }
    if (s->pendings == s->pending_room) {
        Py_ssize_t room = s->pending_room ? 2 * s->pending_room : 1024;
        Pending *grown = PyMem_Realloc(s->pending, (size_t)room * sizeof(Pending));
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        s->pending = grown;
        s->pending_room = room;
    }
    Pending *p = &s->pending[s->pendings++];
    p->source = source;
    p->dport = at[DPORT];
    p->dport_len = len[DPORT];
    p->dst = dst;
    p->dst_len = len[DST];
    p->target = destination;
    return ABSORBED;
}

/* Port numbers as the bytes objects the scanner's sets hold, one object per number for the whole
 * process (at most 65,536 of them, 2.5 MB, made on first use): a delivery's probed ports are a few
 * thousand numbers repeated across tens of thousands of sets. */
static PyObject *ports_made[65536];

/* A new reference to the port's bytes object, or NULL with an error set. */
static PyObject *port_of(const char *at, Py_ssize_t len)
{
    long long number = small_decimal(at, len, 65535);
    if (number < 0) { /* a leading zero, or past 65535: not the canonical form, an object of its own */
        return PyBytes_FromStringAndSize(at, len);
    }
    PyObject *made = ports_made[number];
    if (made == NULL) {
        made = ports_made[number] = PyBytes_FromStringAndSize(at, len);
        if (made == NULL) {
            return NULL;
        }
    }
    Py_INCREF(made);
    return made;
}

/* The block was regular: the probes counted, into the scanner's sets in the records' order (a
 * sweep's set stops growing at its cap, so order decides what it holds). 0, or -1 with an error set. */
static int apply_probes(Pass *s)
{
    for (Py_ssize_t i = 0; i < s->pendings; i++) {
        const Pending *p = &s->pending[i];
        if (place(s, p->source, MADE_PORTS) < 0 || (p->dst != NULL && place(s, p->source, MADE_TARGETS) < 0)) {
            return -1;
        }
        PyObject *port = port_of(p->dport, p->dport_len);
        int failed = port == NULL || PySet_Add(p->source->ports, port) < 0;
        Py_XDECREF(port);
        if (failed) {
            return -1;
        }
        if (p->dst != NULL && PySet_Size(p->source->targets) < s->sweep_cap) {
            /* The address's own bytes object where its slot has one (the memo's key): a sweep's
             * targets are addresses the scanner holds already, not an object each. */
            PyObject *target = p->target != NULL ? key_of(s->cache, p->target) : NULL;
            if (target != NULL) {
                Py_INCREF(target);
            } else if (p->target == NULL) {
                target = PyBytes_FromStringAndSize(p->dst, p->dst_len);
            }
            failed = target == NULL || PySet_Add(p->source->targets, target) < 0;
            Py_XDECREF(target);
            if (failed) {
                return -1;
            }
        }
    }
    return 0;
}

static void release_sets(Cache *cache)
{
    for (Py_ssize_t i = 0; i < cache->holds; i++) {
        Slot *slot = cache->holding[i];
        if (slot->ports != ABSENT) {
            Py_XDECREF(slot->ports);
        }
        if (slot->targets != ABSENT) {
            Py_XDECREF(slot->targets);
        }
        if (slot->own_key) {
            Py_XDECREF(slot->key);
        }
    }
    cache->holds = 0;
}

/* The line is complete: check it has the layout's fields and a status, keep it or drop it. */
static int end_of_line(Pass *s)
{
    const Py_ssize_t *column = s->column;
    Py_ssize_t fields = s->fields;
    s->fields = 0;
    if (fields != s->width || (column[STATUS] >= 0 && !is_status(s->starts[column[STATUS]], s->lens[column[STATUS]]))) {
        return IRREGULAR;
    }
    s->records++;
    const char *at[COLUMNS];
    Py_ssize_t len[COLUMNS];
    for (int c = 0; c < COLUMNS; c++) {
        Py_ssize_t index = column[c] >= 0 ? column[c] : 0;
        at[c] = s->starts[index];
        len[c] = s->lens[index];
    }
    long fs;
    long fd;
    Slot *source;
    Slot *destination;
    if (flags_of(s->cache, at[SRC], len[SRC], &fs, &source) < 0
        || flags_of(s->cache, at[DST], len[DST], &fd, &destination) < 0) {
        return FAILED;
    }
    /* Dropped: ours to ours, and a plain public address to ours that is neither from a mining pool's
     * port nor to SSH or RDP (detect.py's loop does nothing else with them), unless a probe. */
    int passive = fd == 0 && (fs == 0 || (fs == s->public && !one_of(s->mining, at[SPORT], len[SPORT])
                                          && !one_of(s->admin, at[DPORT], len[DPORT])));
    int probe = probe_or_unsure(s->probe, at, len);
    if (passive && !probe) {
        return GO_ON;
    }
    /* A probe the loop would only count: counted here while no record of its source was kept
     * earlier in the block (Python must see those first). */
    if (passive && s->ports != NULL && source != NULL && !source->kept) {
        int absorbed = absorb_probe(s, source, destination, at, len, fs, fd);
        if (absorbed != UNSURE) {
            return absorbed == ABSORBED ? GO_ON : FAILED;
        }
    }
    /* Ours to a plain public address, neither to a mining pool's port nor from SSH or RDP, not a
     * probe: only the egress count reads it. Counted here while no record of this source was kept
     * earlier in the block (Python counts in the records' order, and must see those first). */
    if (!probe && s->egress != NULL && fs == 0 && fd == s->public && source != NULL && !source->kept
        && column[IFACE] >= 0 && !one_of(s->mining, at[DPORT], len[DPORT]) && !one_of(s->admin, at[SPORT], len[SPORT])) {
        int counted = count_egress(s, source, at, len);
        if (counted != UNSURE) {
            return counted == COUNTED ? GO_ON : FAILED;
        }
    }
    if (source != NULL) {
        source->kept = 1;
    }
    if (keep_fields(s->out, s->starts, s->lens, s->wanted, s->count) < 0) {
        return FAILED;
    }
    return GO_ON;
}

/* A separator at `q`: the field before it (if any) ends there; a newline ends the line too. */
static inline int separator(Pass *s, Py_ssize_t q, unsigned char kind)
{
    if (q > s->last + 1) {
        if (s->fields == s->width) {
            return IRREGULAR;
        }
        s->starts[s->fields] = s->buffer + s->last + 1;
        s->lens[s->fields] = q - s->last - 1;
        s->fields++;
    }
    s->last = q;
    return kind == NEWLINE ? end_of_line(s) : GO_ON;
}

static int split_block(Pass *s, Py_ssize_t size)
{
    const char *buffer = s->buffer;
    Py_ssize_t pos = 0;
    int state;
#if defined(__SSE2__)
    /* Sixteen bytes at a time: the bytes at or below 0x20 are those equal to their minimum with 0x20. */
    const __m128i space = _mm_set1_epi8(0x20);
    for (; pos + 16 <= size; pos += 16) {
        __m128i chunk = _mm_loadu_si128((const __m128i *)(const void *)(buffer + pos));
        unsigned int low = (unsigned int)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(chunk, space), chunk));
        while (low) {
            Py_ssize_t q = pos + __builtin_ctz(low);
            low &= low - 1;
            unsigned char kind = CLASS[(unsigned char)buffer[q]];
            if (kind != REGULAR && (state = separator(s, q, kind)) != GO_ON) {
                return state;
            }
        }
    }
#endif
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    const uint64_t low7 = 0x7F7F7F7F7F7F7F7FULL;
    const uint64_t high = 0x8080808080808080ULL;
    const uint64_t below_0x21 = 0x5F5F5F5F5F5F5F5FULL; /* 0x80 - 0x21 in every byte */
    for (; pos + 8 <= size; pos += 8) {
        uint64_t word;
        memcpy(&word, buffer + pos, 8);
        /* The top bit of each byte at or below 0x20 (exact: no carry crosses a byte). */
        uint64_t low = ~(((word & low7) + below_0x21) | word) & high;
        while (low) {
            Py_ssize_t q = pos + (__builtin_ctzll(low) >> 3);
            low &= low - 1;
            unsigned char kind = CLASS[(unsigned char)buffer[q]];
            if (kind != REGULAR && (state = separator(s, q, kind)) != GO_ON) {
                return state;
            }
        }
    }
#endif
    for (; pos < size; pos++) {
        unsigned char kind = CLASS[(unsigned char)buffer[pos]];
        if (kind != REGULAR && (state = separator(s, pos, kind)) != GO_ON) {
            return state;
        }
    }
    return separator(s, size, NEWLINE); /* the last line ends with the block */
}

static int read_columns(PyObject *tuple, Py_ssize_t *into, Py_ssize_t most, Py_ssize_t *count)
{
    Py_ssize_t size = PyTuple_Size(tuple);
    if (size < 0) {
        return -1;
    }
    if (size > most) {
        PyErr_SetString(PyExc_ValueError, "too many columns");
        return -1;
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        into[i] = PyLong_AsSsize_t(PyTuple_GetItem(tuple, i));
        if (into[i] == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    *count = size;
    return 0;
}

/* What a call holds before it starts splitting, released when it cannot. */
static void give_up(Cache *cache, uint32_t *index, Slot *slots, Pass *pass, PyObject *out, Py_buffer *known)
{
    PyMem_Free(cache);
    PyMem_Free(index);
    PyMem_Free(slots);
    PyMem_Free(pass);
    Py_DECREF(out);
    PyBuffer_Release(known);
}

static PyObject *keep(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *data;
    PyObject *decisive;
    PyObject *returned;
    Py_ssize_t width;
    PyObject *memo;
    long public;
    PyObject *mining_ports;
    PyObject *admin_ports;
    Probe probe;
    PyObject *egress;
    long long egress_limit;
    PyObject *classify;
    PyObject *probed;
    PyObject *swept;
    Py_ssize_t sweep_cap;
    long long probe_bytes;
    long long probe_packets;
    PyObject *known_table;
    PyObject *known_keys;
    PyObject *tables;
    PyObject *links = Py_None;
    unsigned long long owner = 0;
    PyObject *firsts = Py_None;
    Py_ssize_t max_probers = 0;
    if (!PyArg_ParseTuple(args, "SnO!O!O!lO!O!nLy#OLOOOnLLOOO|OKOn", &data, &width, &PyTuple_Type, &decisive, &PyTuple_Type,
                          &returned, &PyDict_Type, &memo, &public, &PyTuple_Type, &mining_ports, &PyTuple_Type,
                          &admin_ports, &probe.probe_digits, &probe.max_bytes, &probe.max_port, &probe.port_digits,
                          &egress, &egress_limit, &classify, &probed, &swept, &sweep_cap, &probe_bytes,
                          &probe_packets, &known_table, &known_keys, &tables, &links, &owner, &firsts, &max_probers)) {
        return NULL;
    }
    if ((egress != Py_None && !PyDict_Check(egress)) || (probed != Py_None && !PyDict_Check(probed))
        || (swept != Py_None && !PyDict_Check(swept)) || (firsts != Py_None && !PyList_Check(firsts))) {
        PyErr_SetString(PyExc_TypeError, "egress, ports, sweeps: a dict or None; firsts: a list or None");
        return NULL;
    }
    if (classify != Py_None && !PyCallable_Check(classify)) {
        PyErr_SetString(PyExc_TypeError, "classify: a callable or None");
        return NULL;
    }
    Ports mining;
    Ports admin;
    int ports = read_ports(mining_ports, &mining);
    if (ports == 0) {
        ports = read_ports(admin_ports, &admin);
    }
    if (ports < 0) {
        return NULL;
    }
    if (ports > 0) {
        Py_RETURN_NONE;
    }
    Py_ssize_t column[COLUMNS];
    Py_ssize_t wanted[MAX_WIDTH];
    Py_ssize_t columns = 0;
    Py_ssize_t count = 0;
    if (read_columns(decisive, column, COLUMNS, &columns) < 0 || read_columns(returned, wanted, MAX_WIDTH, &count) < 0) {
        return NULL;
    }
    if (columns != COLUMNS || width < 1 || width > MAX_WIDTH || probe.probe_digits < 0
        || probe.probe_digits > MAX_DIGITS) {
        Py_RETURN_NONE;
    }
    for (int c = 0; c < COLUMNS; c++) {
        if (column[c] >= width || (column[c] < 0 && c != STATUS && c != IFACE && c != PROTOCOL && c != PACKETS)) {
            Py_RETURN_NONE;
        }
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (wanted[i] < 0 || wanted[i] >= width) {
            Py_RETURN_NONE;
        }
    }
    char *buffer;
    Py_ssize_t size;
    if (PyBytes_AsStringAndSize(data, &buffer, &size) < 0) {
        return NULL;
    }
    PyObject *out = PyList_New(0);
    if (out == NULL) {
        return NULL;
    }
    if (size == 0) { /* Python counts no line in an empty block */
        return Py_BuildValue("(nN)", (Py_ssize_t)0, out);
    }
    Py_buffer known;
    memset(&known, 0, sizeof(known));
    if (known_table != Py_None && PyObject_GetBuffer(known_table, &known, PyBUF_WRITABLE) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    Cache *cache = PyMem_Malloc(sizeof(Cache));
    uint32_t *index = PyMem_Calloc(SLOTS, sizeof(uint32_t));
    Slot *slots = PyMem_Malloc(MAX_CACHED * sizeof(Slot));
    Pass *pass = PyMem_Malloc(sizeof(Pass));
    if (cache == NULL || index == NULL || slots == NULL || pass == NULL) {
        give_up(cache, index, slots, pass, out, &known);
        return PyErr_NoMemory();
    }
    cache->index = index;
    cache->end = buffer + size;
    cache->slots = slots;
    cache->known = NULL;
    cache->seed = 0x2545F4914F6CDD1DULL;
    if (known.buf != NULL && PyList_Check(known_keys) && known.len >= (Py_ssize_t)(3 * sizeof(Known))
        && (uintptr_t)known.buf % 8 == 0) {
        size_t entries = (size_t)known.len / sizeof(Known) - 1;
        if ((entries & (entries - 1)) == 0 && (size_t)known.len == (entries + 1) * sizeof(Known)) {
            cache->known_header = known.buf;
            cache->known = (Known *)(void *)((char *)known.buf + sizeof(Known));
            cache->known_mask = entries - 1;
            cache->known_keys = known_keys;
            cache->seed = cache->known_header->seed;
        }
    }
    cache->links = NULL;
    if (cache->known != NULL && owner != 0 && PyList_Check(links)) {
        if (cache->known_header->owner == 0) { /* a new table: the scanner's links start again with it */
            if (PyList_SetSlice(links, 0, PyList_Size(links), NULL) < 0) {
                give_up(cache, index, slots, pass, out, &known);
                return NULL;
            }
            cache->known_header->owner = owner;
        }
        cache->links = cache->known_header->owner == owner ? links : NULL;
    }
    cache->used = 0;
    cache->memo = memo;
    cache->touches = 0;
    cache->classify = classify == Py_None ? NULL : classify;
    cache->tables_in_use = NULL;
    if (cache->classify != NULL && tables != Py_None) {
        int usable = PyTuple_Check(tables) && PyTuple_Size(tables) == 9;
        for (Py_ssize_t i = 0; usable && i < 8; i++) {
            PyObject *table = PyTuple_GetItem(tables, i);
            usable = PyList_Check(table) || (i >= 6 && table == Py_None);
            cache->tables[i] = table == Py_None ? NULL : table;
        }
        usable = usable && (cache->tables[6] == NULL) == (cache->tables[7] == NULL);
        cache->memo_limit = usable ? PyLong_AsSsize_t(PyTuple_GetItem(tables, 8)) : -1;
        if (cache->memo_limit == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            usable = 0;
        }
        cache->tables_in_use = usable ? cache->tables : NULL;
    }
    cache->holds = 0;
    pass->buffer = buffer;
    pass->width = width;
    pass->column = column;
    pass->wanted = wanted;
    pass->count = count;
    pass->probe = &probe;
    pass->public = public;
    pass->mining = &mining;
    pass->admin = &admin;
    pass->cache = cache;
    pass->egress = egress == Py_None ? NULL : egress;
    pass->egress_limit = egress_limit;
    /* A layout without protocol or packets cannot tell a bare probe from a request: no sweeps (as detect.py). */
    pass->ports = probed == Py_None ? NULL : probed;
    pass->sweeps = swept == Py_None || column[PROTOCOL] < 0 || column[PACKETS] < 0 ? NULL : swept;
    pass->sweep_cap = sweep_cap;
    pass->firsts = firsts == Py_None || pass->ports == NULL ? NULL : firsts;
    pass->probers = pass->ports == NULL ? 0 : PyDict_Size(pass->ports);
    pass->max_probers = max_probers;
    pass->probe_bytes = probe_bytes;
    pass->probe_packets = probe_packets;
    pass->pending = NULL;
    pass->pendings = 0;
    pass->pending_room = 0;
    pass->out = out;
    pass->records = 0;
    pass->last = -1;
    pass->fields = 0;
    int state = split_block(pass, size);
    if (state == GO_ON && pass->egress != NULL && apply_egress(pass) < 0) {
        state = FAILED;
    }
    if (state == GO_ON && apply_probes(pass) < 0) {
        state = FAILED;
    }
    release_sets(cache);
    Py_ssize_t records = pass->records;
    PyMem_Free(pass->pending);
    PyMem_Free(pass);
    PyMem_Free(slots);
    PyMem_Free(index);
    PyMem_Free(cache);
    PyBuffer_Release(&known);
    if (state != GO_ON) {
        Py_DECREF(out);
        if (state == IRREGULAR) {
            Py_RETURN_NONE;
        }
        return NULL;
    }
    return Py_BuildValue("(nN)", records, out);
}

/* -- the threat list ------------------------------------------------------------------------- */

/* A dotted quad as inet_pton reads one (four decimal octets of at most 255, no leading zero):
 * 1 and its value, or 0. */
static int dotted_quad(const char *at, Py_ssize_t len, uint32_t *value)
{
    uint32_t result = 0;
    int octets = 0;
    Py_ssize_t i = 0;
    while (octets < 4) {
        Py_ssize_t first = i;
        uint32_t octet = 0;
        while (i < len && at[i] >= '0' && at[i] <= '9' && i - first < 3) {
            octet = octet * 10 + (uint32_t)(at[i] - '0');
            i++;
        }
        if (i == first || octet > 255 || (i - first > 1 && at[first] == '0')) {
            return 0;
        }
        result = result << 8 | octet;
        octets++;
        if (octets < 4) {
            if (i >= len || at[i] != '.') {
                return 0;
            }
            i++;
        }
    }
    if (i != len) {
        return 0;
    }
    *value = result;
    return 1;
}

/* `a.b.c.d` or `a.b.c.d/n` (n at most 32, in one or two digits): 1 and its span as one key (first
 * in the high half, last in the low), or 0: anything else is Python's to read. */
static int ipv4_span(const char *at, Py_ssize_t len, uint64_t *key)
{
    Py_ssize_t slash = 0;
    while (slash < len && at[slash] != '/') {
        slash++;
    }
    uint32_t address;
    if (!dotted_quad(at, slash, &address)) {
        return 0;
    }
    unsigned int prefix = 32;
    if (slash < len) {
        Py_ssize_t digits = len - slash - 1;
        if (digits < 1 || digits > 2 || !all_digits(at + slash + 1, digits)) {
            return 0;
        }
        prefix = (unsigned int)(at[slash + 1] - '0');
        if (digits == 2) {
            prefix = prefix * 10 + (unsigned int)(at[slash + 2] - '0');
        }
        if (prefix > 32) {
            return 0;
        }
    }
    uint32_t span = prefix == 0 ? 0xFFFFFFFFU : (uint32_t)((1ULL << (32 - prefix)) - 1);
    uint32_t first = address & ~span;
    *key = (uint64_t)first << 32 | (first | span);
    return 1;
}

/* The keys in ascending order, a byte at a time from the lowest (a radix sort: fifty thousand keys
 * in well under a millisecond, where qsort's comparison calls took some five); `spare` holds as many.
 * A byte every key shares is skipped. The sorted keys end in `keys`. */
static void sort_keys(uint64_t *keys, uint64_t *spare, size_t count)
{
    uint64_t *from = keys;
    uint64_t *to = spare;
    for (unsigned int shift = 0; shift < 64; shift += 8) {
        size_t place[256] = {0};
        for (size_t i = 0; i < count; i++) {
            place[(from[i] >> shift) & 0xFF]++;
        }
        if (count == 0 || place[(from[0] >> shift) & 0xFF] == count) {
            continue;
        }
        size_t sum = 0;
        for (int b = 0; b < 256; b++) {
            size_t here = place[b];
            place[b] = sum;
            sum += here;
        }
        for (size_t i = 0; i < count; i++) {
            to[place[(from[i] >> shift) & 0xFF]++] = from[i];
        }
        uint64_t *swap = from;
        from = to;
        to = swap;
    }
    if (from != keys) {
        memcpy(keys, from, count * sizeof(uint64_t));
    }
}

/* What a threat list's bytes are to its reader: part of an entry, a blank around one, the end of a
 * line, or what makes the text Python's to read (a comment, a control character, a byte outside ASCII). */
enum { FORBIDDEN, ENTRY, BLANK, END };
static unsigned char LIST_CLASS[256];

static void classify_list_bytes(void)
{
    for (int c = 0x21; c < 0x7F; c++) {
        LIST_CLASS[c] = ENTRY;
    }
    LIST_CLASS['#'] = FORBIDDEN;
    LIST_CLASS[' '] = LIST_CLASS['\t'] = LIST_CLASS['\r'] = BLANK;
    LIST_CLASS['\n'] = END;
}

/* Plain text, one entry per line: the IPv4 spans merged (as addresses.py merges them), and the
 * entries it did not read (IPv6, or anything else: Python's), or None when the text is not that
 * (a comment, a control character or a byte outside ASCII, two entries on a line). */
static PyObject *ipv4_ranges(PyObject *module, PyObject *args)
{
    (void)module;
    const char *text;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "y#", &text, &size)) {
        return NULL;
    }
    size_t room = (size_t)size / 8 + 1; /* an entry is 7 bytes at least, and its line's end one more */
    uint64_t *keys = PyMem_Malloc(2 * room * sizeof(uint64_t)); /* and as many to sort them with */
    PyObject *others = PyList_New(0);
    if (keys == NULL || others == NULL) {
        PyMem_Free(keys);
        Py_XDECREF(others);
        return PyErr_NoMemory();
    }
    size_t count = 0;
    Py_ssize_t pos = 0;
    while (pos < size) {
        /* One line in one pass: where its entry starts and ends, and whether it is one entry. */
        Py_ssize_t first = -1;
        Py_ssize_t last = -1;
        int gap = 0; /* a blank after the entry began */
        for (; pos < size; pos++) {
            unsigned char kind = LIST_CLASS[(unsigned char)text[pos]];
            if (kind == ENTRY) {
                if (gap) { /* two entries on one line */
                    kind = FORBIDDEN;
                } else {
                    first = first < 0 ? pos : first;
                    last = pos + 1;
                    continue;
                }
            }
            if (kind == FORBIDDEN) {
                PyMem_Free(keys);
                Py_DECREF(others);
                Py_RETURN_NONE;
            }
            if (kind == END) {
                break;
            }
            gap = first >= 0;
        }
        pos++;
        if (first < 0) {
            continue;
        }
        uint64_t key;
        if (last - first <= 18 && ipv4_span(text + first, last - first, &key)) {
            keys[count++] = key;
            continue;
        }
        PyObject *entry = PyBytes_FromStringAndSize(text + first, last - first);
        int failed = entry == NULL || PyList_Append(others, entry) < 0;
        Py_XDECREF(entry);
        if (failed) {
            PyMem_Free(keys);
            Py_DECREF(others);
            return NULL;
        }
    }
    sort_keys(keys, keys + room, count);
    PyObject *starts = PyList_New(0);
    PyObject *ends = PyList_New(0);
    int failed = starts == NULL || ends == NULL;
    long long reach = -2; /* the end of the span being grown */
    for (size_t i = 0; i < count && !failed; i++) {
        long long first = (long long)(keys[i] >> 32);
        long long last = (long long)(keys[i] & 0xFFFFFFFFULL);
        if (first <= reach + 1) {
            if (last > reach) {
                reach = last;
                PyObject *now = PyLong_FromLongLong(last);
                failed = now == NULL || PyList_SetItem(ends, PyList_Size(ends) - 1, now) < 0;
            }
            continue;
        }
        PyObject *start = PyLong_FromLongLong(first);
        PyObject *stop = PyLong_FromLongLong(last);
        failed = start == NULL || stop == NULL || PyList_Append(starts, start) < 0 || PyList_Append(ends, stop) < 0;
        Py_XDECREF(start);
        Py_XDECREF(stop);
        reach = last;
    }
    PyMem_Free(keys);
    if (failed) {
        Py_XDECREF(starts);
        Py_XDECREF(ends);
        Py_DECREF(others);
        return NULL;
    }
    return Py_BuildValue("(NNN)", starts, ends, others);
}

/* The keys of a dict of sets whose set holds at least `least` items (the sources that crossed the
 * port-scan threshold): the scanner asks every 50,000 records, of thousands of sources. */
static PyObject *at_least(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *sets;
    Py_ssize_t least;
    if (!PyArg_ParseTuple(args, "O!n", &PyDict_Type, &sets, &least)) {
        return NULL;
    }
    PyObject *found = PyList_New(0);
    if (found == NULL) {
        return NULL;
    }
    Py_ssize_t pos = 0;
    PyObject *key;
    PyObject *value;
    while (PyDict_Next(sets, &pos, &key, &value)) {
        Py_ssize_t size = PyObject_Size(value);
        if (size < 0 || (size >= least && PyList_Append(found, key) < 0)) {
            Py_DECREF(found);
            return NULL;
        }
    }
    return found;
}

static PyMethodDef methods[] = {
    {"keep", keep, METH_VARARGS,
     "keep(block, width, (src, dst, srcport, dstport, bytes, status, interface, protocol, packets), wanted, memo,\n"
     "     public, mining_ports, admin_ports, probe_digits, max_bytes, max_port, egress, egress_limit, classify,\n"
     "     ports, sweeps, sweep_cap, probe_bytes, probe_packets, known, known_keys, tables)\n"
     "-> (records, the wanted fields of the records kept) or None for a block that is not regular."},
    {"at_least", at_least, METH_VARARGS, "at_least(sets, least) -> the keys whose value holds at least `least` items."},
    {"ipv4_ranges", ipv4_ranges, METH_VARARGS,
     "ipv4_ranges(text) -> (starts, ends, the entries not read) of a plain list of one entry per line, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef definition = {
    PyModuleDef_HEAD_INIT, "_prefilter", "The flow-log scanner's compiled first pass.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__prefilter(void)
{
    classify_list_bytes();
    return PyModule_Create(&definition);
}
