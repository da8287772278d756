#include "rt_error.h"

#include <string.h>

const char *rt_strerror(int code)
{
    if (code == 0) {
        return "ok";
    }
    switch (code) {
#define RT_ERROR_CASE(name, value, wire, msg)                                                      \
    case name:                                                                                     \
        return msg;
        RT_ERRORS(RT_ERROR_CASE)
#undef RT_ERROR_CASE
    default:
        return "unknown error";
    }
}

const char *rt_wire_code(int code)
{
    if (code == 0) {
        return "OK";
    }
    switch (code) {
#define RT_ERROR_WIRE(name, value, wire, msg)                                                      \
    case name:                                                                                     \
        return wire;
        RT_ERRORS(RT_ERROR_WIRE)
#undef RT_ERROR_WIRE
    default:
        return "INTERNAL";
    }
}

int rt_error_from_wire(const char *name, unsigned name_len)
{
    if (name_len == 2 && memcmp(name, "OK", 2) == 0) {
        return 0;
    }
    /* The first entry with a given wire name is its canonical code. */
#define RT_ERROR_MATCH(code, value, wire, msg)                                                     \
    if (name_len == sizeof(wire) - 1 && memcmp(name, wire, name_len) == 0 && value != 0) {         \
        return code;                                                                               \
    }
    RT_ERRORS(RT_ERROR_MATCH)
#undef RT_ERROR_MATCH
    return RT_EINTERNAL;
}
