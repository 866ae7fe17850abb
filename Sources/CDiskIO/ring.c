// ring.c: batches of reads and writes through io_uring, and the pread/pwrite fallback.
#include "cdiskio.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <unistd.h>

struct dio_ring {
    struct io_uring ring;
    unsigned depth;
};

int dio_ring_open(unsigned depth, dio_ring **out) {
    dio_ring *r = calloc(1, sizeof *r);
    if (!r) return -ENOMEM;
    int rc = io_uring_queue_init(depth, &r->ring, 0);
    if (rc < 0) {
        free(r);
        return rc;
    }
    r->depth = depth;
    *out = r;
    return 0;
}

void dio_ring_close(dio_ring *r) {
    if (!r) return;
    io_uring_queue_exit(&r->ring);
    free(r);
}

/// Queues the rest of op `i` (from `done[i]` bytes on).
static void prep(struct io_uring_sqe *sqe, dio_op *op, uint64_t done, size_t i) {
    char *buf = (char *)op->buffer + done;
    unsigned len = (unsigned)((op->length - done) > (1u << 30) ? (1u << 30) : (op->length - done));
    if (op->is_write) io_uring_prep_write(sqe, op->fd, buf, len, op->offset + done);
    else io_uring_prep_read(sqe, op->fd, buf, len, op->offset + done);
    io_uring_sqe_set_data64(sqe, i);
}

/// Applies one completion to its op; returns 1 when the op must be queued again.
static int complete(dio_op *op, uint64_t *done, int res) {
    if (res == -EAGAIN || res == -EINTR) return 1;
    if (res < 0) {
        op->result = res;
        return 0;
    }
    if (res == 0) {  // end of file (read) or a device that takes nothing (write)
        op->result = op->is_write ? -EIO : (int64_t)*done;
        return 0;
    }
    *done += (uint64_t)res;
    if (*done < op->length) return 1;
    op->result = (int64_t)*done;
    return 0;
}

int dio_ring_run(dio_ring *r, dio_op *ops, size_t count) {
    if (count == 0) return 0;
    uint64_t *done = calloc(count, sizeof *done);
    size_t *todo = malloc(count * sizeof *todo);
    if (!done || !todo) {
        free(done);
        free(todo);
        return -ENOMEM;
    }
    size_t ntodo = 0, inflight = 0, finished = 0;
    for (size_t i = count; i-- > 0;) {  // a stack: op 0 on top
        ops[i].result = 0;
        if (ops[i].length == 0) finished++;
        else todo[ntodo++] = i;
    }
    int rc = 0;
    while (finished < count) {
        while (ntodo > 0 && inflight < r->depth) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
            if (!sqe) break;
            size_t i = todo[--ntodo];
            prep(sqe, &ops[i], done[i], i);
            inflight++;
        }
        int s = io_uring_submit_and_wait(&r->ring, 1);
        if (s < 0 && s != -EINTR) {
            rc = s;
            break;
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&r->ring, head, cqe) {
            size_t i = (size_t)io_uring_cqe_get_data64(cqe);
            inflight--;
            if (complete(&ops[i], &done[i], cqe->res)) todo[ntodo++] = i;
            else finished++;
            seen++;
        }
        io_uring_cq_advance(&r->ring, seen);
    }
    if (rc < 0) {
        // Drain what the kernel still holds so no buffer is written after we return.
        while (inflight > 0) {
            struct io_uring_cqe *cqe;
            if (io_uring_wait_cqe(&r->ring, &cqe) < 0) break;
            io_uring_cqe_seen(&r->ring, cqe);
            inflight--;
        }
        for (size_t i = 0; i < count; i++)
            if (ops[i].result == 0 && ops[i].length > 0) ops[i].result = -EIO;
    }
    free(done);
    free(todo);
    return rc;
}

void dio_sync_run(dio_op *ops, size_t count) {
    for (size_t i = 0; i < count; i++) {
        dio_op *op = &ops[i];
        uint64_t done = 0;
        op->result = 0;
        while (done < op->length) {
            char *buf = (char *)op->buffer + done;
            ssize_t n = op->is_write ? pwrite(op->fd, buf, op->length - done, (off_t)(op->offset + done))
                                     : pread(op->fd, buf, op->length - done, (off_t)(op->offset + done));
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                op->result = -errno;
                break;
            }
            if (n == 0) {
                op->result = op->is_write ? -EIO : (int64_t)done;
                break;
            }
            done += (uint64_t)n;
        }
        if (done == op->length) op->result = (int64_t)done;
    }
}
