/* Helpers of the control plane's tenant-owned resources, shared by identity (auth/identity.c)
 * and the session, trace, task and approval APIs: every operation acts for an actor, filters by the
 * actor's tenant, answers JSON written field by field, and reports an ibex_api_result. An id of
 * another tenant gets the answer an unknown id gets; the attempt goes to the operator's audit
 * trail (tenant_id NULL), never the caller's.
 *
 * Thread: blocking (store calls); any thread that owns the store handle, never an event loop. */
#ifndef IBEX_API_RESOURCE_H
#define IBEX_API_RESOURCE_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/buf.h"
#include "../core/str.h"
#include "../store/store.h"

struct ibex_actor {
    const char *tenant_id;  /* NULL: the operator (CLI) */
    const char *subject;    /* who, for the audit trail: key id, token subject, "cli" */
    uint32_t scopes;        /* what the actor holds (a key may grant only these) */
    const char *request_id; /* for the audit trail; may be NULL */
};

/* The outcome of an operation: status 200/201 with the JSON answer in out, or an error. */
struct ibex_api_result {
    int status;
    const char *code;             /* error code, NULL on success */
    char message[200];            /* error message */
    char param[64];               /* the offending field, or "" */
    struct ibex_buf field_errors; /* JSON array for VALIDATION_ERROR, else empty */
    int64_t epoch;                /* > 0: the identity epoch this change moved to */
};

void ibex_api_result_init(struct ibex_api_result *r);
void ibex_api_result_dispose(struct ibex_api_result *r);
/* Each sets r and returns the status. */
int ibex_api_ok(struct ibex_api_result *r, int status);
int ibex_api_fail(struct ibex_api_result *r, int status, const char *code, const char *param,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* 400 VALIDATION_ERROR with field_errors [{field, message}]. */
int ibex_api_invalid(struct ibex_api_result *r, const char *field, const char *message);
/* 503 STORE_UNAVAILABLE for a lost connection, else 500 STORE_ERROR. */
int ibex_api_store_failed(struct ibex_store *s, struct ibex_api_result *r, int rc);
/* 404 code ("no such <what>") for an id the actor cannot see; when it exists in table under
 * another tenant, the attempt is recorded with ibex_audit_foreign. */
int ibex_api_not_found(struct ibex_store *s, const struct ibex_actor *a, const char *table,
                       const char *id, const char *what, const char *code,
                       struct ibex_api_result *r);

/* Request bodies: each returns 0, or the status of the validation error set in r. */
int ibex_api_check_body(json_object *body, struct ibex_api_result *r); /* NULL or an object */
int ibex_api_check_id(const char *id, struct ibex_api_result *r);      /* a UUID */
int ibex_api_need_tenant(const struct ibex_actor *a, struct ibex_api_result *r);
/* A string field of at most max bytes; *out NULL when absent (an error when required). */
int ibex_api_get_string(json_object *body, const char *field, bool required, size_t max,
                        const char **out, struct ibex_api_result *r);
/* The optional "metadata" object serialised ("{}" when absent), at most 16 KiB. */
int ibex_api_get_metadata(json_object *body, const char **out, struct ibex_api_result *r);
/* An optional object field serialised, at most max bytes; *out NULL when absent or null. The
 * text lives as long as body. */
int ibex_api_get_object(json_object *body, const char *field, size_t max, const char **out,
                        struct ibex_api_result *r);
/* A reference in a body to a row of the actor's tenant: 0 when sql ($1 = id, $2 = tenant id)
 * finds a row, else the 400 "<field> is not <what> of this tenant", the same answer for a
 * malformed, unknown or foreign id (nothing tells them apart). */
int ibex_api_check_ref(struct ibex_store *s, const struct ibex_actor *a, const char *field,
                       const char *id, const char *sql, const char *what,
                       struct ibex_api_result *r);

/* For ibex_api_check_ref: a live (not revoked) agent, and a session, of the tenant. */
extern const char *const ibex_live_agent_sql;
extern const char *const ibex_session_ref_sql;

/* List queries (no I/O: on the loop). ibex_api_query_parse reads ?page= (1-1000000, default 1)
 * and ?page_size= (1-100, default 20) and hands every other key=value, raw, to fn (may be
 * NULL); a repeated parameter: the last one wins. Each returns 0, or the 400 set in r. */
typedef int (*ibex_api_query_fn)(void *data, struct ibex_str key, struct ibex_str value,
                                 struct ibex_api_result *r);
int ibex_api_query_parse(struct ibex_str query, int64_t *page, int64_t *page_size,
                         ibex_api_query_fn fn, void *data, struct ibex_api_result *r);
/* value must be one of names[0..n); copied to out (outlen bytes). message explains a refusal. */
int ibex_api_query_enum(struct ibex_str value, const char *field, const char *const *names,
                        size_t n, char *out, size_t outlen, const char *message,
                        struct ibex_api_result *r);
/* A UUID, copied in lowercase (ids are stored so) to out (IBEX_UUID_LEN + 1 bytes). */
int ibex_api_query_uuid(struct ibex_str value, const char *field, char *out,
                        struct ibex_api_result *r);
/* Text of 1 to max bytes after percent-decoding ('+' is a space), valid UTF-8 without control
 * characters, copied to out (max + 1 bytes). */
int ibex_api_query_text(struct ibex_str value, const char *field, size_t max, char *out,
                        struct ibex_api_result *r);

/* JSON answers: ,"key":value inside an object being written (no comma after '{'). */
void ibex_json_put_key(struct ibex_buf *b, const char *key);
void ibex_json_put_str(struct ibex_buf *b, const char *key, const char *v,
                       size_t len); /* NULL: null */
void ibex_json_put_cstr(struct ibex_buf *b, const char *key, const char *v);
void ibex_json_put_time(struct ibex_buf *b, const char *key, int64_t ms); /* seconds; 0: null */
void ibex_json_put_raw(struct ibex_buf *b, const char *key, const char *json); /* NULL/"": null */
/* A text column: as a JSON string (ibex_json_put_col), or as JSON text stored by this module
 * (ibex_json_put_raw_col); SQL NULL is null. */
void ibex_json_put_col(struct ibex_buf *b, const char *key, const struct ibex_store_value *v);
void ibex_json_put_raw_col(struct ibex_buf *b, const char *key, const struct ibex_store_value *v);

/* Rows read back. */
void ibex_col_text(const struct ibex_store_value *v, char *out, size_t n); /* "" for NULL */
char *ibex_col_dup(const struct ibex_store_value *v);                      /* NULL for NULL */
int64_t ibex_col_int(const struct ibex_store_value *v);                    /* 0 for NULL */
int ibex_row_exists(void *data, const struct ibex_store_value *cols, size_t ncols); /* bool */
int ibex_row_int64(void *data, const struct ibex_store_value *cols, size_t ncols);  /* int64 */

/* {"object":"list","data":[...]}: a row function calls item before writing each object. */
struct ibex_api_list {
    struct ibex_buf *out;
    size_t n;
};
void ibex_api_list_open(struct ibex_api_list *l, struct ibex_buf *out);
void ibex_api_list_item(struct ibex_api_list *l);
void ibex_api_list_close(struct ibex_api_list *l);

/* The actor's tenant's rows as a list: sql selects with $1 = tenant id and $2 = limit; row
 * writes each (data is the struct ibex_api_list). */
int ibex_api_tenant_rows(struct ibex_store *s, const struct ibex_actor *a, const char *sql,
                         ibex_store_row_fn row, int64_t limit, struct ibex_buf *out,
                         struct ibex_api_result *r);
/* One page of a list: {"object":"list","<key>":[...],"total":N,"page":P,"page_size":S}. The
 * statements are "SELECT count(*)<from_where>" and "SELECT <cols><from_where> ORDER BY <order>
 * LIMIT .. OFFSET ..", with params[0..nparams) (at most 8) for the placeholders of from_where;
 * row writes each row (data is the struct ibex_api_list). */
int ibex_api_page_rows(struct ibex_store *s, const char *cols, const char *from_where,
                       const char *order, const struct ibex_store_value *params, size_t nparams,
                       int64_t page, int64_t page_size, const char *key, ibex_store_row_fn row,
                       struct ibex_buf *out, struct ibex_api_result *r);
/* Runs sql (a SELECT with $1 = id and $2 = the actor's tenant), writing each row with row (data
 * is a struct ibex_api_list on out); *found is the number of rows. For ibex_api_fetch_fn's. */
int ibex_api_fetch_one(struct ibex_store *s, const struct ibex_actor *a, const char *sql,
                       ibex_store_row_fn row, const char *id, struct ibex_buf *out, size_t *found);
/* One object of the actor's tenant written by fetch, or the 404 of its kind. */
typedef int (*ibex_api_fetch_fn)(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                                 struct ibex_buf *out, size_t *found);
int ibex_api_tenant_get(struct ibex_store *s, const struct ibex_actor *a, const char *id,
                        ibex_api_fetch_fn fetch, const char *table, const char *what,
                        const char *code, struct ibex_buf *out, struct ibex_api_result *r);

/* The audit trail (table audit_events). ibex_audit_sql with IBEX_AUDIT_NPARAMS parameters
 * from ibex_audit_params (id must hold 37 bytes; text points at the arguments) is one row,
 * for the store writer or a transaction. detail_json is an object without secrets. */
extern const char *const ibex_audit_sql;
#define IBEX_AUDIT_NPARAMS 8
void ibex_audit_params(struct ibex_store_value params[IBEX_AUDIT_NPARAMS], char *id,
                       const char *tenant_id, const char *actor, const char *action,
                       const char *target, const char *request_id, const char *detail_json,
                       int64_t now_ms);
/* Writes one row now, as actor a. */
int ibex_audit(struct ibex_store *s, const struct ibex_actor *a, const char *tenant_id,
               const char *action, const char *target, const char *detail_json);
/* Records, for the operator only, that caller_tenant's actor asked for id, a `what` of another
 * tenant. */
void ibex_audit_foreign(struct ibex_store *s, const char *caller_tenant, const char *actor,
                        const char *request_id, const char *what, const char *id);

#endif
