#include "common/cn_common.h"

const char *cn_strerror(int err)
{
    switch (err) {
    case CN_OK:
        return "ok";
    case CN_EAGAIN:
        return "try again";
    case CN_EINVAL:
        return "invalid value";
    case CN_EPROTO:
        return "protocol error";
    case CN_ETOOBIG:
        return "too large";
    case CN_ENOMEM:
        return "out of memory";
    case CN_EIO:
        return "i/o error";
    case CN_ENOTFOUND:
        return "not found";
    case CN_EEXIST:
        return "already exists";
    case CN_EAUTH:
        return "authentication failed";
    case CN_ECLOSED:
        return "closed";
    case CN_ETIMEDOUT:
        return "timed out";
    case CN_ECONFLICT:
        return "conflict";
    case CN_ELIMIT:
        return "limit reached";
    case CN_EVERSION:
        return "unknown version";
    case CN_EINTERNAL:
        return "internal error";
    default:
        return "unknown error";
    }
}
