! simulation: a "simulation rank" that fills a 2-D field in place in a loan
! of shared memory, sends it to a Go analysis agent as a proxy (no copy), and
! checks the reduction the agent sends back against its own sum.
!
!   simulation ROOT EXCHANGE [STEPS]
!
! ROOT is the exchange root ("-" for the default /dev/shm/shmex-<uid>); the
! analysis agent is found by discovery (behavior "Calc", action "sum": the
! sum of a payload of float64s).
program simulation
   use, intrinsic :: iso_c_binding
   use shmex
   implicit none

   integer, parameter :: nx = 512, ny = 256
   character(len=256) :: root, name, arg
   type(c_ptr) :: x, client, handle, loan
   type(shmex_id) :: ids(4)
   integer(c_size_t) :: found, nproxy
   integer(c_int8_t) :: proxy(SHMEX_PROXY_MAX)
   real(c_double), pointer :: field(:, :)
   real(c_double) :: mine, theirs
   integer :: step, steps, i, j

   call get_command_argument(1, root)
   call get_command_argument(2, name)
   steps = 3
   if (command_argument_count() >= 3) then
      call get_command_argument(3, arg)
      read (arg, *) steps
   end if
   if (root == "-") root = ""

   call shmex_check(shmex_open_f(name, root, x), "open")
   call shmex_check(shmex_discover(x, f_str("Calc"), 0, ids, size(ids, kind=c_size_t), found), "discover")
   if (found < 1) error stop "no Calc agent"
   call shmex_check(shmex_client_open(x, c_null_ptr, client), "client")
   call shmex_check(shmex_handle_open(client, ids(1), handle), "handle")
   ! Warm arena room for the field once, at startup: the first touch of
   ! fresh shared memory costs a page fault per page.
   call shmex_check(shmex_reserve(x, [int(nx, c_size_t)*ny*8], 1_c_size_t), "reserve")

   do step = 1, steps
      ! The field lives in shared memory from the start: no copy to send it.
      call shmex_check(shmex_loan_array_2d(x, nx, ny, loan, field), "loan")
      do j = 1, ny
         do i = 1, nx
            field(i, j) = sin(0.01d0*i)*cos(0.02d0*j) + step
         end do
      end do
      mine = sum(field)
      call shmex_check(shmex_loan_commit(loan, proxy, SHMEX_PROXY_MAX, nproxy), "commit")
      nullify (field) ! the loan is published: not to be written any more
      ! The proxy (a few dozen bytes) is the action's argument.
      call shmex_check(shmex_call_double(handle, "sum", proxy, nproxy, 60000000000_c_int64_t, theirs), "sum")
      if (abs(theirs - mine) > 1d-9*abs(mine)) then
         write (*, '(a,i0,a,es22.15,a,es22.15)') "step ", step, ": agent says ", theirs, ", rank says ", mine
         error stop 1
      end if
      write (*, '(a,i0,a,es22.15)') "step ", step, ": sum ", theirs
   end do

   call shmex_check(shmex_client_close(client), "client close")
   call shmex_check(shmex_close(x), "close")
   write (*, '(a)') "ok"
end program simulation
