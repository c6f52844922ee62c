! shmex: Fortran bindings of libshmex (capi/shmex.h) over iso_c_binding.
!
! The interfaces below are the C functions themselves, with their C names
! and types: handles are type(c_ptr), sizes integer(c_size_t), timeouts
! integer(c_int64_t) nanoseconds (SHMEX_FOREVER waits without a bound),
! strings NUL-terminated (pass f_str("name"), or trim(s)//c_null_char).
! Every function returns an integer(c_int) status: SHMEX_OK or a negative
! SHMEX_E* code, explained by shmex_error_message().
!
! The helpers at the end (f_str, shmex_error_message, shmex_check,
! shmex_open_f, shmex_call_double, shmex_loan_array_2d) are Fortran
! conveniences over them.
!
! Memory: a loan's data pointer (shmex_loan_alloc) points into shared
! memory: map it onto a Fortran array with c_f_pointer, fill it in place,
! then commit; do not write it afterwards. Results of shmex_call are
! malloc'ed by the library: release them with shmex_free. See
! docs/embedding.md for the rules of a Go runtime inside a Fortran program
! (signals; no fork without exec).
module shmex
   use, intrinsic :: iso_c_binding
   implicit none
   private

   ! ------------------------------------------------------------ constants
   integer(c_int), parameter, public :: SHMEX_VERSION_MAJOR = 0, SHMEX_VERSION_MINOR = 1
   integer(c_int), parameter, public :: SHMEX_OK = 0, SHMEX_EINVAL = -1, SHMEX_EBADHANDLE = -2, &
      SHMEX_ECLOSED = -3, SHMEX_EBADID = -4, SHMEX_EMAILBOX_CLOSED = -5, SHMEX_ETIMEDOUT = -6, &
      SHMEX_EPENDING = -7, SHMEX_EREMOTE = -8, SHMEX_EAGENT_TERMINATED = -9, SHMEX_ECANCELED = -10, &
      SHMEX_ESHUTDOWN = -11, SHMEX_ETOOLARGE = -12, SHMEX_ENOSPACE = -13, SHMEX_EPROXY = -14, &
      SHMEX_ETRUNCATED = -15, SHMEX_EEXIST = -16, SHMEX_EIO = -17, SHMEX_EBUSY = -18
   integer(c_int64_t), parameter, public :: SHMEX_FOREVER = -1_c_int64_t
   integer(c_int32_t), parameter, public :: SHMEX_ROLE_AGENT = 1, SHMEX_ROLE_CLIENT = 2
   integer(c_int), parameter, public :: SHMEX_STATUS_MISSING = 0, SHMEX_STATUS_ACTIVE = 1, &
      SHMEX_STATUS_TERMINATED = 2
   integer(c_int32_t), parameter, public :: SHMEX_IDLE_DEFAULT = 0, SHMEX_IDLE_SPIN = 1, SHMEX_IDLE_PARK = 2, &
      SHMEX_IDLE_BACKOFF = 3
   integer(c_int), parameter, public :: SHMEX_LIFETIME_SINGLE_USE = 0, SHMEX_LIFETIME_OWNED = 1, &
      SHMEX_LIFETIME_LEASED = 2
   integer(c_size_t), parameter, public :: SHMEX_PROXY_MAX = 64, SHMEX_ID_STRLEN = 48
   integer(c_int), parameter, public :: SHMEX_FORM_VALUE = 0, SHMEX_FORM_BYTES = 1
   integer(c_int), parameter, public :: SHMEX_MP_NIL = 1, SHMEX_MP_BOOL = 2, SHMEX_MP_INT = 3, &
      SHMEX_MP_FLOAT = 4, SHMEX_MP_STR = 5, SHMEX_MP_BIN = 6, SHMEX_MP_ARRAY = 7, SHMEX_MP_MAP = 8, &
      SHMEX_MP_EXT = 9

   ! ---------------------------------------------------------------- types
   type, bind(c), public :: shmex_id
      integer(c_int8_t) :: uuid(16)
      integer(c_int32_t) :: role
   end type shmex_id

   type, bind(c), public :: shmex_options
      integer(c_size_t) :: size = 0 ! set to c_sizeof(opts)
      type(c_ptr) :: root = c_null_ptr
      integer(c_int32_t) :: idle = 0
      integer(c_int32_t) :: reserved = 0
      integer(c_int64_t) :: mailbox_bytes = 0
   end type shmex_options

   type, bind(c), public :: shmex_mp_writer
      type(c_ptr) :: buf = c_null_ptr
      integer(c_size_t) :: cap = 0
      integer(c_size_t) :: len = 0
      integer(c_int32_t) :: err = 0
      integer(c_int32_t) :: reserved = 0
   end type shmex_mp_writer

   type, bind(c), public :: shmex_mp_reader
      type(c_ptr) :: buf = c_null_ptr
      integer(c_size_t) :: len = 0
      integer(c_size_t) :: pos = 0
      integer(c_int32_t) :: err = 0
      integer(c_int32_t) :: reserved = 0
   end type shmex_mp_reader

   ! ------------------------------------------------------ the C functions
   public :: shmex_version, shmex_version_string, shmex_strerror, shmex_last_error, &
      shmex_last_error_kind, shmex_free, shmex_id_format, shmex_id_parse, shmex_open, shmex_close, &
      shmex_register_agent, shmex_register_client, shmex_terminate, shmex_status, shmex_discover, &
      shmex_client_open, shmex_client_id, shmex_client_close, shmex_handle_open, shmex_handle_close, &
      shmex_call, shmex_call_into, shmex_action, shmex_future_done, shmex_future_wait, shmex_future_take, &
      shmex_future_cancel, shmex_future_free, shmex_ping, shmex_shutdown, shmex_loan_alloc, &
      shmex_loan_commit, shmex_loan_abort, shmex_put, shmex_is_proxy, shmex_resolve, &
      shmex_view_release, shmex_view_form, shmex_reserve, shmex_proxy_free, shmex_mp_writer_init, shmex_mp_write_nil, &
      shmex_mp_write_bool, shmex_mp_write_int, shmex_mp_write_double, shmex_mp_write_str, &
      shmex_mp_write_bin, shmex_mp_write_array, shmex_mp_write_raw, shmex_mp_reader_init, &
      shmex_mp_next, shmex_mp_read_nil, shmex_mp_read_int, shmex_mp_read_double, shmex_mp_read_array, &
      shmex_mp_read_raw

   interface
      function shmex_version() bind(c, name="shmex_version") result(v)
         import :: c_int
         integer(c_int) :: v
      end function
      function shmex_version_string() bind(c, name="shmex_version_string") result(s)
         import :: c_ptr
         type(c_ptr) :: s
      end function
      function shmex_strerror(status) bind(c, name="shmex_strerror") result(s)
         import :: c_int, c_ptr
         integer(c_int), value :: status
         type(c_ptr) :: s
      end function
      function shmex_last_error() bind(c, name="shmex_last_error") result(s)
         import :: c_ptr
         type(c_ptr) :: s
      end function
      function shmex_last_error_kind() bind(c, name="shmex_last_error_kind") result(s)
         import :: c_ptr
         type(c_ptr) :: s
      end function
      subroutine shmex_free(p) bind(c, name="shmex_free")
         import :: c_ptr
         type(c_ptr), value :: p
      end subroutine
      function shmex_id_format(id, buf, cap) bind(c, name="shmex_id_format") result(rc)
         import :: c_int, c_char, c_size_t, shmex_id
         type(shmex_id), intent(in) :: id
         character(kind=c_char), dimension(*) :: buf
         integer(c_size_t), value :: cap
         integer(c_int) :: rc
      end function
      function shmex_id_parse(s, id) bind(c, name="shmex_id_parse") result(rc)
         import :: c_int, c_char, shmex_id
         character(kind=c_char), dimension(*), intent(in) :: s
         type(shmex_id), intent(out) :: id
         integer(c_int) :: rc
      end function
      function shmex_open(name, opts, x) bind(c, name="shmex_open") result(rc)
         import :: c_int, c_char, c_ptr, shmex_options
         character(kind=c_char), dimension(*), intent(in) :: name
         type(shmex_options), intent(in) :: opts
         type(c_ptr), intent(out) :: x
         integer(c_int) :: rc
      end function
      function shmex_close(x) bind(c, name="shmex_close") result(rc)
         import :: c_int, c_ptr
         type(c_ptr), value :: x
         integer(c_int) :: rc
      end function
      function shmex_register_agent(x, behavior, implements, n, name, id) &
         bind(c, name="shmex_register_agent") result(rc)
         import :: c_int, c_char, c_ptr, c_size_t, shmex_id
         type(c_ptr), value :: x
         character(kind=c_char), dimension(*), intent(in) :: behavior
         type(c_ptr), value :: implements ! const char *const *, or c_null_ptr
         integer(c_size_t), value :: n
         type(c_ptr), value :: name ! NUL-terminated, or c_null_ptr
         type(shmex_id), intent(out) :: id
         integer(c_int) :: rc
      end function
      function shmex_register_client(x, name, id) bind(c, name="shmex_register_client") result(rc)
         import :: c_int, c_ptr, shmex_id
         type(c_ptr), value :: x
         type(c_ptr), value :: name
         type(shmex_id), intent(out) :: id
         integer(c_int) :: rc
      end function
      function shmex_terminate(x, id) bind(c, name="shmex_terminate") result(rc)
         import :: c_int, c_ptr, shmex_id
         type(c_ptr), value :: x
         type(shmex_id), intent(in) :: id
         integer(c_int) :: rc
      end function
      function shmex_status(x, id, status) bind(c, name="shmex_status") result(rc)
         import :: c_int, c_ptr, shmex_id
         type(c_ptr), value :: x
         type(shmex_id), intent(in) :: id
         integer(c_int), intent(out) :: status
         integer(c_int) :: rc
      end function
      function shmex_discover(x, behavior, allow_subtypes, ids, cap, n) bind(c, name="shmex_discover") result(rc)
         import :: c_int, c_char, c_ptr, c_size_t, shmex_id
         type(c_ptr), value :: x
         character(kind=c_char), dimension(*), intent(in) :: behavior
         integer(c_int), value :: allow_subtypes
         type(shmex_id), dimension(*), intent(out) :: ids
         integer(c_size_t), value :: cap
         integer(c_size_t), intent(out) :: n
         integer(c_int) :: rc
      end function
      function shmex_client_open(x, name, c) bind(c, name="shmex_client_open") result(rc)
         import :: c_int, c_ptr
         type(c_ptr), value :: x
         type(c_ptr), value :: name
         type(c_ptr), intent(out) :: c
         integer(c_int) :: rc
      end function
      function shmex_client_id(c, id) bind(c, name="shmex_client_id") result(rc)
         import :: c_int, c_ptr, shmex_id
         type(c_ptr), value :: c
         type(shmex_id), intent(out) :: id
         integer(c_int) :: rc
      end function
      function shmex_client_close(c) bind(c, name="shmex_client_close") result(rc)
         import :: c_int, c_ptr
         type(c_ptr), value :: c
         integer(c_int) :: rc
      end function
      function shmex_handle_open(c, agent, h) bind(c, name="shmex_handle_open") result(rc)
         import :: c_int, c_ptr, shmex_id
         type(c_ptr), value :: c
         type(shmex_id), intent(in) :: agent
         type(c_ptr), intent(out) :: h
         integer(c_int) :: rc
      end function
      function shmex_handle_close(h, timeout_ns) bind(c, name="shmex_handle_close") result(rc)
         import :: c_int, c_ptr, c_int64_t
         type(c_ptr), value :: h
         integer(c_int64_t), value :: timeout_ns
         integer(c_int) :: rc
      end function
      function shmex_call(h, action, args, args_len, timeout_ns, result, result_len) &
         bind(c, name="shmex_call") result(rc)
         import :: c_int, c_char, c_ptr, c_size_t, c_int64_t, c_int8_t
         type(c_ptr), value :: h
         character(kind=c_char), dimension(*), intent(in) :: action
         integer(c_int8_t), dimension(*), intent(in) :: args
         integer(c_size_t), value :: args_len
         integer(c_int64_t), value :: timeout_ns
         type(c_ptr), intent(out) :: result ! malloc'ed: shmex_free it
         integer(c_size_t), intent(out) :: result_len
         integer(c_int) :: rc
      end function
      function shmex_call_into(h, action, args, args_len, timeout_ns, buf, cap, n) &
         bind(c, name="shmex_call_into") result(rc)
         import :: c_int, c_char, c_ptr, c_size_t, c_int64_t, c_int8_t
         type(c_ptr), value :: h
         character(kind=c_char), dimension(*), intent(in) :: action
         integer(c_int8_t), dimension(*), intent(in) :: args
         integer(c_size_t), value :: args_len
         integer(c_int64_t), value :: timeout_ns
         integer(c_int8_t), dimension(*) :: buf
         integer(c_size_t), value :: cap
         integer(c_size_t), intent(out) :: n
         integer(c_int) :: rc
      end function
      function shmex_action(h, action, args, args_len, f) bind(c, name="shmex_action") result(rc)
         import :: c_int, c_char, c_ptr, c_size_t, c_int8_t
         type(c_ptr), value :: h
         character(kind=c_char), dimension(*), intent(in) :: action
         integer(c_int8_t), dimension(*), intent(in) :: args
         integer(c_size_t), value :: args_len
         type(c_ptr), intent(out) :: f
         integer(c_int) :: rc
      end function
      function shmex_future_done(f) bind(c, name="shmex_future_done") result(rc)
         import :: c_int, c_ptr
         type(c_ptr), value :: f
         integer(c_int) :: rc
      end function
      function shmex_future_wait(f, timeout_ns, result, result_len) bind(c, name="shmex_future_wait") result(rc)
         import :: c_int, c_ptr, c_size_t, c_int64_t
         type(c_ptr), value :: f
         integer(c_int64_t), value :: timeout_ns
         type(c_ptr), intent(out) :: result
         integer(c_size_t), intent(out) :: result_len
         integer(c_int) :: rc
      end function
      function shmex_future_take(f, timeout_ns, buf, cap, n) bind(c, name="shmex_future_take") result(rc)
         import :: c_int, c_ptr, c_size_t, c_int64_t, c_int8_t
         type(c_ptr), value :: f
         integer(c_int64_t), value :: timeout_ns
         integer(c_int8_t), dimension(*) :: buf
         integer(c_size_t), value :: cap
         integer(c_size_t), intent(out) :: n
         integer(c_int) :: rc
      end function
      function shmex_future_cancel(f) bind(c, name="shmex_future_cancel") result(rc)
         import :: c_int, c_ptr
         type(c_ptr), value :: f
         integer(c_int) :: rc
      end function
      function shmex_future_free(f) bind(c, name="shmex_future_free") result(rc)
         import :: c_int, c_ptr
         type(c_ptr), value :: f
         integer(c_int) :: rc
      end function
      function shmex_ping(h, timeout_ns, rtt_ns) bind(c, name="shmex_ping") result(rc)
         import :: c_int, c_ptr, c_int64_t
         type(c_ptr), value :: h
         integer(c_int64_t), value :: timeout_ns
         integer(c_int64_t), intent(out) :: rtt_ns
         integer(c_int) :: rc
      end function
      function shmex_shutdown(h, timeout_ns) bind(c, name="shmex_shutdown") result(rc)
         import :: c_int, c_ptr, c_int64_t
         type(c_ptr), value :: h
         integer(c_int64_t), value :: timeout_ns
         integer(c_int) :: rc
      end function
      function shmex_loan_alloc(x, n, lifetime, lease_ns, loan, data) bind(c, name="shmex_loan_alloc") result(rc)
         import :: c_int, c_ptr, c_size_t, c_int64_t
         type(c_ptr), value :: x
         integer(c_size_t), value :: n
         integer(c_int), value :: lifetime
         integer(c_int64_t), value :: lease_ns
         type(c_ptr), intent(out) :: loan
         type(c_ptr), intent(out) :: data
         integer(c_int) :: rc
      end function
      function shmex_loan_commit(loan, proxy, cap, n) bind(c, name="shmex_loan_commit") result(rc)
         import :: c_int, c_ptr, c_size_t, c_int8_t
         type(c_ptr), value :: loan
         integer(c_int8_t), dimension(*) :: proxy
         integer(c_size_t), value :: cap
         integer(c_size_t), intent(out) :: n
         integer(c_int) :: rc
      end function
      function shmex_loan_abort(loan) bind(c, name="shmex_loan_abort") result(rc)
         import :: c_int, c_ptr
         type(c_ptr), value :: loan
         integer(c_int) :: rc
      end function
      function shmex_put(x, data, n, lifetime, lease_ns, proxy, cap, plen) bind(c, name="shmex_put") result(rc)
         import :: c_int, c_ptr, c_size_t, c_int64_t, c_int8_t
         type(c_ptr), value :: x
         type(c_ptr), value :: data
         integer(c_size_t), value :: n
         integer(c_int), value :: lifetime
         integer(c_int64_t), value :: lease_ns
         integer(c_int8_t), dimension(*) :: proxy
         integer(c_size_t), value :: cap
         integer(c_size_t), intent(out) :: plen
         integer(c_int) :: rc
      end function
      function shmex_is_proxy(b, n) bind(c, name="shmex_is_proxy") result(rc)
         import :: c_int, c_size_t, c_int8_t
         integer(c_int8_t), dimension(*), intent(in) :: b
         integer(c_size_t), value :: n
         integer(c_int) :: rc
      end function
      function shmex_resolve(x, b, n, view, data, data_len) bind(c, name="shmex_resolve") result(rc)
         import :: c_int, c_ptr, c_size_t, c_int8_t
         type(c_ptr), value :: x
         integer(c_int8_t), dimension(*), intent(in) :: b
         integer(c_size_t), value :: n
         type(c_ptr), intent(out) :: view
         type(c_ptr), intent(out) :: data ! read-only: never write through it
         integer(c_size_t), intent(out) :: data_len
         integer(c_int) :: rc
      end function
      function shmex_view_release(view) bind(c, name="shmex_view_release") result(rc)
         import :: c_int, c_ptr
         type(c_ptr), value :: view
         integer(c_int) :: rc
      end function
      function shmex_view_form(view) bind(c, name="shmex_view_form") result(rc)
         import :: c_int, c_ptr
         type(c_ptr), value :: view
         integer(c_int) :: rc
      end function
      function shmex_reserve(x, sizes, n) bind(c, name="shmex_reserve") result(rc)
         import :: c_int, c_ptr, c_size_t
         type(c_ptr), value :: x
         integer(c_size_t), dimension(*), intent(in) :: sizes
         integer(c_size_t), value :: n
         integer(c_int) :: rc
      end function
      function shmex_proxy_free(x, b, n) bind(c, name="shmex_proxy_free") result(rc)
         import :: c_int, c_ptr, c_size_t, c_int8_t
         type(c_ptr), value :: x
         integer(c_int8_t), dimension(*), intent(in) :: b
         integer(c_size_t), value :: n
         integer(c_int) :: rc
      end function

      subroutine shmex_mp_writer_init(w, buf, cap) bind(c, name="shmex_mp_writer_init")
         import :: c_ptr, c_size_t, shmex_mp_writer
         type(shmex_mp_writer), intent(out) :: w
         type(c_ptr), value :: buf
         integer(c_size_t), value :: cap
      end subroutine
      subroutine shmex_mp_write_nil(w) bind(c, name="shmex_mp_write_nil")
         import :: shmex_mp_writer
         type(shmex_mp_writer), intent(inout) :: w
      end subroutine
      subroutine shmex_mp_write_bool(w, v) bind(c, name="shmex_mp_write_bool")
         import :: c_int, shmex_mp_writer
         type(shmex_mp_writer), intent(inout) :: w
         integer(c_int), value :: v
      end subroutine
      subroutine shmex_mp_write_int(w, v) bind(c, name="shmex_mp_write_int")
         import :: c_int64_t, shmex_mp_writer
         type(shmex_mp_writer), intent(inout) :: w
         integer(c_int64_t), value :: v
      end subroutine
      subroutine shmex_mp_write_double(w, v) bind(c, name="shmex_mp_write_double")
         import :: c_double, shmex_mp_writer
         type(shmex_mp_writer), intent(inout) :: w
         real(c_double), value :: v
      end subroutine
      subroutine shmex_mp_write_str(w, s, n) bind(c, name="shmex_mp_write_str")
         import :: c_char, c_size_t, shmex_mp_writer
         type(shmex_mp_writer), intent(inout) :: w
         character(kind=c_char), dimension(*), intent(in) :: s
         integer(c_size_t), value :: n
      end subroutine
      subroutine shmex_mp_write_bin(w, b, n) bind(c, name="shmex_mp_write_bin")
         import :: c_ptr, c_size_t, shmex_mp_writer
         type(shmex_mp_writer), intent(inout) :: w
         type(c_ptr), value :: b
         integer(c_size_t), value :: n
      end subroutine
      subroutine shmex_mp_write_array(w, n) bind(c, name="shmex_mp_write_array")
         import :: c_int32_t, shmex_mp_writer
         type(shmex_mp_writer), intent(inout) :: w
         integer(c_int32_t), value :: n
      end subroutine
      subroutine shmex_mp_write_raw(w, b, n) bind(c, name="shmex_mp_write_raw")
         import :: c_size_t, c_int8_t, shmex_mp_writer
         type(shmex_mp_writer), intent(inout) :: w
         integer(c_int8_t), dimension(*), intent(in) :: b
         integer(c_size_t), value :: n
      end subroutine
      subroutine shmex_mp_reader_init(r, buf, n) bind(c, name="shmex_mp_reader_init")
         import :: c_ptr, c_size_t, shmex_mp_reader
         type(shmex_mp_reader), intent(out) :: r
         type(c_ptr), value :: buf
         integer(c_size_t), value :: n
      end subroutine
      function shmex_mp_next(r) bind(c, name="shmex_mp_next") result(t)
         import :: c_int, shmex_mp_reader
         type(shmex_mp_reader), intent(in) :: r
         integer(c_int) :: t
      end function
      function shmex_mp_read_nil(r) bind(c, name="shmex_mp_read_nil") result(ok)
         import :: c_int, shmex_mp_reader
         type(shmex_mp_reader), intent(inout) :: r
         integer(c_int) :: ok
      end function
      function shmex_mp_read_int(r) bind(c, name="shmex_mp_read_int") result(v)
         import :: c_int64_t, shmex_mp_reader
         type(shmex_mp_reader), intent(inout) :: r
         integer(c_int64_t) :: v
      end function
      function shmex_mp_read_double(r) bind(c, name="shmex_mp_read_double") result(v)
         import :: c_double, shmex_mp_reader
         type(shmex_mp_reader), intent(inout) :: r
         real(c_double) :: v
      end function
      function shmex_mp_read_array(r) bind(c, name="shmex_mp_read_array") result(n)
         import :: c_int32_t, shmex_mp_reader
         type(shmex_mp_reader), intent(inout) :: r
         integer(c_int32_t) :: n
      end function
      function shmex_mp_read_raw(r, n) bind(c, name="shmex_mp_read_raw") result(p)
         import :: c_ptr, c_size_t, shmex_mp_reader
         type(shmex_mp_reader), intent(inout) :: r
         integer(c_size_t), intent(out) :: n
         type(c_ptr) :: p
      end function

      function c_strlen(s) bind(c, name="strlen") result(n)
         import :: c_ptr, c_size_t
         type(c_ptr), value :: s
         integer(c_size_t) :: n
      end function
   end interface

   ! ------------------------------------------------- Fortran conveniences
   public :: f_str, c_to_f_string, shmex_error_message, shmex_check, shmex_open_f, &
      shmex_call_double, shmex_loan_array_2d

contains

   !> f_str returns s, trimmed, with a NUL: what the C functions take.
   pure function f_str(s) result(c)
      character(len=*), intent(in) :: s
      character(kind=c_char, len=len_trim(s) + 1) :: c
      c = trim(s)//c_null_char
   end function f_str

   !> c_to_f_string copies a NUL-terminated C string into a Fortran string.
   function c_to_f_string(p) result(s)
      type(c_ptr), intent(in) :: p
      character(len=:), allocatable :: s
      character(kind=c_char), pointer :: chars(:)
      integer(c_size_t) :: n, i
      if (.not. c_associated(p)) then
         s = ""
         return
      end if
      n = c_strlen(p)
      call c_f_pointer(p, chars, [n])
      allocate (character(len=n) :: s)
      do i = 1, n
         s(i:i) = chars(i)
      end do
   end function c_to_f_string

   !> shmex_error_message describes a failed call's status on this thread:
   !> "SHMEX_E...: <the library's message>".
   function shmex_error_message(status) result(msg)
      integer(c_int), intent(in) :: status
      character(len=:), allocatable :: msg
      msg = c_to_f_string(shmex_strerror(status))//" ("//c_to_f_string(shmex_last_error())//")"
   end function shmex_error_message

   !> shmex_check stops the program with a message when status is an error.
   subroutine shmex_check(status, what)
      integer(c_int), intent(in) :: status
      character(len=*), intent(in) :: what
      if (status /= SHMEX_OK) then
         write (*, '(a,": ",a)') what, shmex_error_message(status)
         error stop 1
      end if
   end subroutine shmex_check

   !> shmex_open_f opens (creates or joins) the exchange name under root
   !> ("" for the default, /dev/shm/shmex-<uid>).
   function shmex_open_f(name, root, x) result(rc)
      character(len=*), intent(in) :: name, root
      type(c_ptr), intent(out) :: x
      integer(c_int) :: rc
      type(shmex_options) :: opts
      character(kind=c_char), allocatable, target :: croot(:)
      integer :: i, n
      opts%size = c_sizeof(opts)
      if (len_trim(root) > 0) then
         n = len_trim(root)
         allocate (croot(n + 1))
         do i = 1, n
            croot(i) = root(i:i)
         end do
         croot(n + 1) = c_null_char
         opts%root = c_loc(croot)
      end if
      rc = shmex_open(f_str(name), opts, x)
   end function shmex_open_f

   !> shmex_call_double calls action with the MessagePack arguments
   !> args(1:nargs) and decodes its result, a number, into value.
   function shmex_call_double(h, action, args, nargs, timeout_ns, value) result(rc)
      type(c_ptr), intent(in) :: h
      character(len=*), intent(in) :: action
      integer(c_int8_t), dimension(*), intent(in) :: args
      integer(c_size_t), intent(in) :: nargs
      integer(c_int64_t), intent(in) :: timeout_ns
      real(c_double), intent(out) :: value
      integer(c_int) :: rc
      integer(c_int8_t), target :: res(16)
      integer(c_size_t) :: nres
      type(shmex_mp_reader) :: r
      value = 0
      rc = shmex_call_into(h, f_str(action), args, nargs, timeout_ns, res, size(res, kind=c_size_t), nres)
      if (rc /= SHMEX_OK) return
      call shmex_mp_reader_init(r, c_loc(res), nres)
      value = shmex_mp_read_double(r)
      if (r%err /= 0 .or. r%pos /= nres) rc = SHMEX_EINVAL
   end function shmex_call_double

   !> shmex_loan_array_2d lends an nx-by-ny array of doubles in this
   !> process's arena: field points at it, to fill in place before
   !> shmex_loan_commit (single use: freed once its reader released it).
   function shmex_loan_array_2d(x, nx, ny, loan, field) result(rc)
      type(c_ptr), intent(in) :: x
      integer, intent(in) :: nx, ny
      type(c_ptr), intent(out) :: loan
      real(c_double), pointer, intent(out) :: field(:, :)
      integer(c_int) :: rc
      type(c_ptr) :: data
      nullify (field)
      rc = shmex_loan_alloc(x, int(nx, c_size_t)*int(ny, c_size_t)*8_c_size_t, SHMEX_LIFETIME_SINGLE_USE, &
                            0_c_int64_t, loan, data)
      if (rc == SHMEX_OK) call c_f_pointer(data, field, [nx, ny])
   end function shmex_loan_array_2d

end module shmex
