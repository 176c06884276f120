// Linalg graph IR of @q
func.func @q(%x: tensor<2x4xf32>, %w: tensor<3x8xi4>) -> (tensor<3xi32>, tensor<4x2xi32>) {
  %e = tensor.empty() : tensor<2x4xi32>
  %xq = linalg.generic @elementwise_1 {domain = [2, 4], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%x : tensor<2x4xf32>) outs(%e : tensor<2x4xi32>) {
  ^bb0(%a0: f32, %a1: i32):
    %s0 = math.roundeven %a0 : f32
    %c1 = arith.constant {value = -128.0} : f32
    %s2 = arith.maximumf %s0, %c1 : f32
    %c3 = arith.constant {value = 127.0} : f32
    %s4 = arith.minimumf %s2, %c3 : f32
    %s5 = arith.fptosi %s4 : i8
    %s6 = arith.extsi %s5 : i32
    linalg.yield %s6
  } -> tensor<2x4xi32>
  %flat = tensor.collapse_shape %xq [[0, 1]] : tensor<2x4xi32> -> tensor<8xi32>
  %z = tensor.empty() : tensor<3xi32>
  %zero = linalg.generic @fill_1 {domain = [3], indexing_maps = [affine_map<(d0) -> (d0)>], iterator_types = ["parallel"]} ins() outs(%z : tensor<3xi32>) {
  ^bb0(%a0: i32):
    %c0 = arith.constant {value = 0} : i32
    linalg.yield %c0
  } -> tensor<3xi32>
  %y = linalg.generic @matmul_1 {domain = [3, 8], indexing_maps = [affine_map<(d0, d1) -> (d1)>, affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0)>], iterator_types = ["parallel", "reduction"]} ins(%flat : tensor<8xi32>, %w : tensor<3x8xi4>) outs(%zero : tensor<3xi32>) {
  ^bb0(%a0: i32, %a1: i4, %a2: i32):
    %s0 = arith.extsi %a1 : i32
    %s1 = arith.muli %a0, %s0 : i32
    %s2 = arith.addi %s1, %a2 : i32
    linalg.yield %s2
  } -> tensor<3xi32>
  %et = tensor.empty() : tensor<4x2xi32>
  %t = linalg.generic @transpose_1 {domain = [4, 2], indexing_maps = [affine_map<(d0, d1) -> (d1, d0)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%xq : tensor<2x4xi32>) outs(%et : tensor<4x2xi32>) {
  ^bb0(%a0: i32, %a1: i32):
    linalg.yield %a0
  } -> tensor<4x2xi32>
  %en = tensor.empty() : tensor<4x2xi32>
  %n = linalg.generic @elementwise_2 {domain = [4, 2], indexing_maps = [affine_map<(d0, d1) -> (d0, d1)>, affine_map<(d0, d1) -> (d0, d1)>], iterator_types = ["parallel", "parallel"]} ins(%t : tensor<4x2xi32>) outs(%en : tensor<4x2xi32>) {
  ^bb0(%a0: i32, %a1: i32):
    %s0 = arith.muli %a0, %a0 : i32
    linalg.yield %s0
  } -> tensor<4x2xi32>
  return %y, %n
}
