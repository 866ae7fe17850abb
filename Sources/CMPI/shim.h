// shim.h: Open MPI for Swift. MPI_COMM_WORLD, the datatypes and the ops are macros that cast
// the addresses of globals (OMPI_PREDEFINED_GLOBAL), which Swift cannot import; these inline
// functions return them. Everything else is imported from <mpi.h> as is.
#ifndef DSV4_CMPI_SHIM_H
#define DSV4_CMPI_SHIM_H
#include <mpi.h>

static inline MPI_Comm dsv4_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype dsv4_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype dsv4_mpi_float(void) { return MPI_FLOAT; }
static inline MPI_Datatype dsv4_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Datatype dsv4_mpi_int64(void) { return MPI_INT64_T; }
static inline MPI_Op dsv4_mpi_max(void) { return MPI_MAX; }
static inline MPI_Op dsv4_mpi_sum(void) { return MPI_SUM; }
static inline MPI_Request dsv4_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline MPI_Status *dsv4_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline int dsv4_mpi_any_source(void) { return MPI_ANY_SOURCE; }
static inline int dsv4_mpi_any_tag(void) { return MPI_ANY_TAG; }
static inline MPI_Errhandler dsv4_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }

#endif
