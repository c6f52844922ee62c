! test_shmex: tests of the Fortran bindings against a Go Calc agent.
!
!   test_shmex ROOT EXCHANGE AGENT_ID
program test_shmex
   use, intrinsic :: iso_c_binding
   use shmex
   implicit none

   character(len=256) :: root, name, aid
   type(c_ptr) :: x, client, handle, f, view, res, data, bad
   type(shmex_id) :: calc, other
   type(shmex_mp_writer) :: w
   type(shmex_mp_reader) :: r
   integer(c_int8_t), target :: args(64), out(64)
   integer(c_int8_t), pointer :: bytes(:)
   integer(c_size_t) :: n, nres, k
   integer(c_int) :: rc, st
   integer(c_int64_t) :: rtt
   real(c_double) :: v
   character(kind=c_char, len=48) :: idtext
   integer :: failures = 0

   interface
      function foreign_signal_handlers() bind(c, name="foreign_signal_handlers") result(n)
         import :: c_int
         integer(c_int) :: n
      end function
   end interface

   call get_command_argument(1, root)
   call get_command_argument(2, name)
   call get_command_argument(3, aid)

   ! Built with -fno-backtrace, the Go runtime keeps its signal handlers.
   call expect(foreign_signal_handlers() == 0, "the Go runtime's signal handlers")
   call expect(shmex_version() >= 100, "version")
   call expect(index(c_to_f_string(shmex_version_string()), "0.") == 1, "version string")

   ! Bad handles and arguments are statuses.
   bad = transfer(12345_c_intptr_t, bad)
   call expect_rc(shmex_close(bad), SHMEX_EBADHANDLE, "close of a forged handle")
   call expect(len(c_to_f_string(shmex_last_error())) > 0, "a message for it")
   call expect_rc(shmex_id_parse(f_str("nonsense"), other), SHMEX_EINVAL, "parse of a bad id")

   call shmex_check(shmex_open_f(name, root, x), "open")
   call shmex_check(shmex_id_parse(f_str(aid), calc), "parse")
   call shmex_check(shmex_id_format(calc, idtext, 48_c_size_t), "format")
   call expect(c_to_f_string(c_loc_str(idtext)) == trim(aid), "id round trip")
   call shmex_check(shmex_status(x, calc, st), "status")
   call expect(st == SHMEX_STATUS_ACTIVE, "active")
   call shmex_check(shmex_client_open(x, c_null_ptr, client), "client")
   call shmex_check(shmex_handle_open(client, calc, handle), "handle")

   ! add [20, 22] -> 42, through a future.
   call shmex_mp_writer_init(w, c_loc(args), size(args, kind=c_size_t))
   call shmex_mp_write_array(w, 2_c_int32_t)
   call shmex_mp_write_int(w, 20_c_int64_t)
   call shmex_mp_write_int(w, 22_c_int64_t)
   call expect(w%err == 0, "writer")
   call shmex_check(shmex_action(handle, f_str("add"), args, w%len, f), "action")
   call shmex_check(shmex_future_take(f, SHMEX_FOREVER, out, size(out, kind=c_size_t), n), "take")
   call shmex_mp_reader_init(r, c_loc(out), n)
   call expect(shmex_mp_read_int(r) == 42, "20 + 22")

   ! An unknown action is the agent's error.
   rc = shmex_call(handle, f_str("nope"), args, w%len, SHMEX_FOREVER, res, nres)
   call expect_rc(rc, SHMEX_EREMOTE, "unknown action")
   call expect(c_to_f_string(shmex_last_error_kind()) == "UnknownActionError", "its kind")

   call shmex_check(shmex_ping(handle, SHMEX_FOREVER, rtt), "ping")
   call expect(rtt > 0, "rtt")

   ! A result lent by the Go agent, read in place.
   call shmex_mp_writer_init(w, c_loc(args), size(args, kind=c_size_t))
   call shmex_mp_write_int(w, 1000_c_int64_t)
   call shmex_check(shmex_call(handle, f_str("make"), args, w%len, SHMEX_FOREVER, res, nres), "make")
   call c_f_pointer(res, bytes, [nres])
   call expect(shmex_is_proxy(bytes, nres) == 1, "a proxy")
   call shmex_check(shmex_resolve(x, bytes, nres, view, data, n), "resolve")
   call shmex_free(res)
   call c_f_pointer(data, bytes, [n])
   call expect(n == 1000, "1000 bytes")
   call expect(shmex_view_form(view) == SHMEX_FORM_BYTES, "a Blob is bytes")
   do k = 1, n
      if (iand(int(bytes(k)), 255) /= mod(k - 1, 251_c_size_t)) then
         call expect(.false., "payload byte")
         exit
      end if
   end do
   call shmex_check(shmex_view_release(view), "release")
   call expect_rc(shmex_view_release(view), SHMEX_EBADHANDLE, "double release")

   ! A put (one copy) summed by the agent.
   call put_and_sum()

   call shmex_check(shmex_client_close(client), "client close")
   call shmex_check(shmex_close(x), "close")
   call expect_rc(shmex_close(x), SHMEX_EBADHANDLE, "double close")
   if (failures > 0) then
      write (*, '(i0,a)') failures, " failures"
      error stop 1
   end if
   write (*, '(a)') "PASS"

contains

   subroutine put_and_sum()
      real(c_double), target :: vals(4) = [1d0, 2d0, 3d0, 4.5d0]
      integer(c_int8_t) :: proxy(SHMEX_PROXY_MAX)
      integer(c_size_t) :: np
      call shmex_check(shmex_put(x, c_loc(vals), 32_c_size_t, SHMEX_LIFETIME_OWNED, 0_c_int64_t, proxy, &
                                 SHMEX_PROXY_MAX, np), "put")
      call shmex_check(shmex_call_double(handle, "sum", proxy, np, SHMEX_FOREVER, v), "sum")
      call expect(v == 10.5d0, "sum of the put")
      call shmex_check(shmex_proxy_free(x, proxy, np), "free")
      rc = shmex_call_double(handle, "sum", proxy, np, SHMEX_FOREVER, v)
      call expect_rc(rc, SHMEX_EREMOTE, "sum of a freed payload")
   end subroutine put_and_sum

   function c_loc_str(s) result(p)
      character(kind=c_char, len=*), target, intent(in) :: s
      type(c_ptr) :: p
      p = c_loc(s(1:1))
   end function c_loc_str

   subroutine expect(ok, what)
      logical, intent(in) :: ok
      character(len=*), intent(in) :: what
      if (.not. ok) then
         failures = failures + 1
         write (*, '(a,a)') "FAIL ", what
      end if
   end subroutine expect

   subroutine expect_rc(got, want, what)
      integer(c_int), intent(in) :: got, want
      character(len=*), intent(in) :: what
      if (got /= want) then
         failures = failures + 1
         write (*, '(a,a,a,i0,a,i0,a,a)') "FAIL ", what, ": status ", got, ", want ", want, ": ", &
            shmex_error_message(got)
      end if
   end subroutine expect_rc

end program test_shmex
